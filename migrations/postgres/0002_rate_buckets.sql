-- The send rate of each relay, as token buckets kept in the database, so that the workers
-- sending through one relay share its limits (`[delivery] rate_per_second`, `max_per_hour`):
-- a worker takes tokens (locking the relay's rows for the moment it takes them) before it
-- claims rows to send.
CREATE TABLE rate_buckets (
    relay      TEXT NOT NULL,
    -- `second` or `hour`.
    span       TEXT NOT NULL CHECK (span IN ('second', 'hour')),
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (relay, span)
);
