-- Tool integrity (issue: tool integrity). Every definition of a tool an
-- upstream has offered, by its canonical hash. `state`:
--   pinned     the definition in force (at most one per server and tool);
--   pending    offered, waiting for a reviewer (the tool is quarantined);
--   rejected   a reviewer refused it (the tool stays quarantined);
--   superseded pinned once, replaced by a newer pin.
-- `reason` says why a definition waits: new (pin = "review"), changed
-- (differs from the pin), lint (the poisoning lint). `decided_by` is who
-- pinned, approved or rejected it ("toolgate:first-use" for a first-use
-- pin). Times are Unix milliseconds. Portable SQL (SQLite and PostgreSQL).
CREATE TABLE tool_definitions (
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    definition TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    lint TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    changed_ms BIGINT NOT NULL,
    decided_by TEXT,
    comment TEXT,
    PRIMARY KEY (server, tool, definition_hash)
);
-- One pin per tool, whichever replica writes it first.
CREATE UNIQUE INDEX tool_definitions_pin ON tool_definitions (server, tool) WHERE state = 'pinned';
CREATE INDEX tool_definitions_changed ON tool_definitions (changed_ms);
