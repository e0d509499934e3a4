-- The audit trail (issue: audit). One hash chain: each record's
-- `record_hash` is SHA-256(previous record_hash ‖ body), where `body` is the
-- record's canonical JSON (sorted keys, its own `seq` included). `seq` is
-- gapless from 1. Appends are serialised through the one `audit_head` row
-- (locked by an UPDATE at the start of each batch's transaction), so
-- several replicas on one PostgreSQL, and command-line tools, extend the
-- same chain. `subject`, `kind`, `target`, `decision` and `at_ms` repeat
-- body fields for queries; `audit verify` checks they match the body.
CREATE TABLE audit_head (
    chain TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    record_hash TEXT NOT NULL
);
INSERT INTO audit_head (chain, seq, record_hash)
VALUES ('main', 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    call_id TEXT,
    subject TEXT,
    target TEXT,
    decision TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    record_hash TEXT NOT NULL
);
CREATE INDEX audit_records_at ON audit_records (at_ms);
CREATE INDEX audit_records_subject ON audit_records (subject, seq);
CREATE INDEX audit_records_call ON audit_records (call_id);

-- Signed checkpoints: `body` is canonical JSON {seq, record_hash, at_ms,
-- public_key}; `signature` is Ed25519 over it (base64). The signing key is
-- never stored here. Checkpoints are also appended to a file outside the
-- database, which is what proves a truncated tail.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    record_hash TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL
);
