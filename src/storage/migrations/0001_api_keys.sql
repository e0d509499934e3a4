-- API keys for agents and local use (issue: identity). Only a SHA-256 of
-- the secret part is stored; the key itself is shown once, at creation.
-- Times are Unix seconds. Portable SQL: the same file runs on SQLite and
-- PostgreSQL.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    secret_sha256 TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
