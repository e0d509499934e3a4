-- How far audit records have been forwarded to the configured webhook /
-- SIEM endpoint (issue: audit). The records themselves are the backlog:
-- nothing is lost while the receiver is down, and replicas sharing the
-- database advance one cursor (compare-and-set), so each record is sent
-- at least once (receivers dedupe on `seq`).
CREATE TABLE audit_forward (
    name TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO audit_forward (name, last_seq) VALUES ('default', 0);
