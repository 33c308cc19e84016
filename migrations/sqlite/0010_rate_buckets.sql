-- The send rate of each relay, as token buckets kept in the database, so that processes
-- sending through one relay share its limits (`[delivery] rate_per_second`, `max_per_hour`).
-- On SQLite one process sends at a time; the table exists so both stores have one schema.
CREATE TABLE rate_buckets (
    relay      TEXT NOT NULL,
    -- `second` or `hour`.
    span       TEXT NOT NULL CHECK (span IN ('second', 'hour')),
    tokens     REAL NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (relay, span)
) STRICT;
