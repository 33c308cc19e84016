-- Service emails (confirmations, welcomes) waiting to be sent. The web request queues one
-- (in the transaction that records the request or the confirmation) and answers at once; the
-- daemon's mail queue sends it, and retries it while the SMTP server is down.
CREATE TABLE mail_queue (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('confirmation', 'welcome')),
    created_at    TEXT    NOT NULL,
    -- When it is next tried. A sender that takes it moves this past its own attempt, so a
    -- sender that dies leaves it due again later, never lost.
    due_at        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    TEXT,
    done_at       TEXT,
    outcome       TEXT    CHECK (outcome IN ('sent', 'ambiguous', 'failed', 'dropped')),
    CHECK ((done_at IS NULL) = (outcome IS NULL))
) STRICT;
CREATE INDEX mail_queue_due ON mail_queue (due_at) WHERE done_at IS NULL;
