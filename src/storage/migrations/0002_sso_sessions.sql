-- Browser sessions from SSO sign-ins (issue: identity). The cookie holds a
-- random id; only its SHA-256 is stored, so reading the database does not
-- give anyone a session. `caller_json` is who signed in (subject, name,
-- groups, …). Expired rows are pruned at each sign-in, and one subject
-- keeps at most its newest 20 sessions.
CREATE TABLE sso_sessions (
    id_sha256 TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    caller_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_sessions_expires ON sso_sessions (expires_at);
CREATE INDEX sso_sessions_subject ON sso_sessions (subject, created_at);
