-- The audit writer maintains every index of `audit_records` on each append,
-- so the table keeps only the indexes a query uses: `seq` (the key: the
-- chain, pages, forwarding), `at_ms` (retention, time filters) and
-- `(subject, seq)` (the admin API's caller filter). No query looks records
-- up by call id: its index cost every append a B-tree insert for nothing.
DROP INDEX IF EXISTS audit_records_call;
