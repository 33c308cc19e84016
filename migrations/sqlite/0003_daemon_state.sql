-- What the daemon needs to remember about itself across restarts: when it first ran, so that
-- a slot from before Herald was started is never "caught up" (a fresh installation mails
-- nobody at start-up).
CREATE TABLE daemon_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
