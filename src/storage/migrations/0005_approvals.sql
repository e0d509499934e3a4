-- Approval requests (issue: approval gates). One row per call and gate
-- that holds it. An approval is bound to who asked, the tool, its
-- definition's hash and the arguments' hash, and is used once: `state`
-- goes pending → approved → used, or pending → denied / expired. Times
-- are Unix milliseconds. Portable SQL: runs on SQLite and PostgreSQL.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    subject TEXT NOT NULL,
    caller TEXT NOT NULL,
    tool TEXT NOT NULL,
    server TEXT,
    definition_hash TEXT NOT NULL,
    args_hash TEXT NOT NULL,
    args TEXT NOT NULL,
    gate TEXT NOT NULL,
    approver_group TEXT NOT NULL,
    approvers_needed BIGINT NOT NULL,
    reason TEXT,
    call_id TEXT,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    decided_ms BIGINT,
    decided_by TEXT,
    comment TEXT,
    -- A denial or expiry told to a caller that did not wait (non-blocking
    -- mode): told once.
    reported BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX approvals_state ON approvals (state, created_ms);
CREATE INDEX approvals_binding ON approvals (subject, tool, args_hash);

-- Each approver's say on a request (several when a gate asks for N).
CREATE TABLE approval_votes (
    approval_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    approve BIGINT NOT NULL,
    comment TEXT,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (approval_id, approver)
);

-- How far approval requests and decisions have been announced to
-- `[approvals.webhook]` (the audit records are the backlog, as for
-- `[audit.forward]`).
INSERT INTO audit_forward (name, last_seq) VALUES ('approvals', 0);
