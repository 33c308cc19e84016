-- Herald's schema for the whole pipeline: subscribers, issues, what each issue sent, the
-- per-recipient delivery ledger, feed state, the editors' queue, schedule slots and the
-- sender lease. The invariants that protect subscribers are enforced here, by the database,
-- so that a bug in Rust code cannot break them.
--
-- Timestamps are RFC 3339 UTC text.

CREATE TABLE subscribers (
    id              INTEGER PRIMARY KEY,
    email           TEXT    NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- The case-insensitive identity (the whole address lower-cased, Unicode-aware, by Herald).
    email_key       TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL DEFAULT ''
                    CHECK (instr(name, char(10)) = 0 AND instr(name, char(13)) = 0),
    status          TEXT    NOT NULL
                    CHECK (status IN ('pending', 'confirmed', 'unsubscribed', 'bounced')),
    -- Where the subscriber came from: `import:FILE`, `cli`, `web`.
    source          TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    confirmed_at    TEXT,
    unsubscribed_at TEXT,
    bounced_at      TEXT
) STRICT;

CREATE INDEX subscribers_by_status ON subscribers (status, id);

-- One row per newsletter issue, frozen before the first message goes out.
CREATE TABLE issues (
    id          INTEGER PRIMARY KEY,
    number      INTEGER NOT NULL UNIQUE CHECK (number > 0),
    cycle       INTEGER NOT NULL CHECK (cycle > 0),
    term_slug   TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    preheader   TEXT    NOT NULL,
    -- The rendered, CSS-inlined HTML and the text part, with the per-subscriber parts as
    -- placeholders: what every subscriber receives, apart from their own name and links.
    html        TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    -- The web version for the archive: no personal data.
    web_html    TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL DEFAULT 'frozen'
                CHECK (status IN ('frozen', 'held', 'sending', 'sent', 'cancelled')),
    -- The schedule slot this issue was made for (NULL for a manual `herald send`).
    slot_key    TEXT    UNIQUE,
    -- Not sent before this time (review window); NULL means at once.
    send_after  TEXT,
    created_at  TEXT    NOT NULL,
    finished_at TEXT
) STRICT;

-- A frozen issue's content never changes.
CREATE TRIGGER issues_content_is_frozen
BEFORE UPDATE OF number, cycle, term_slug, subject, preheader, html, text ON issues
BEGIN
    SELECT RAISE(ABORT, 'a frozen issue cannot be changed');
END;

-- The term each issue featured: never the same term twice in one cycle.
CREATE TABLE terms_sent (
    issue_id INTEGER NOT NULL UNIQUE REFERENCES issues (id) ON DELETE RESTRICT,
    cycle    INTEGER NOT NULL CHECK (cycle > 0),
    slug     TEXT    NOT NULL,
    sent_at  TEXT    NOT NULL,
    UNIQUE (cycle, slug)
) STRICT;

-- The links each issue carried: a canonical URL is sent at most once, ever.
CREATE TABLE links_sent (
    issue_id      INTEGER NOT NULL REFERENCES issues (id) ON DELETE RESTRICT,
    position      INTEGER NOT NULL CHECK (position >= 0),
    canonical_url TEXT    NOT NULL UNIQUE,
    url           TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    summary       TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (issue_id, position)
) STRICT;

-- The per-recipient ledger: exactly one row per (issue, subscriber).
--   pending  -> sending (claimed, attempt counted, before the SMTP transaction)
--   sending  -> sent | pending (transient failure, retry later) | failed | bounced
--   sending  -> left as is by a crash: ambiguous, resent only on request
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    issue_id        INTEGER NOT NULL REFERENCES issues (id) ON DELETE RESTRICT,
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE RESTRICT,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'bounced', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,
    smtp_reply      TEXT,
    next_attempt_at TEXT,
    claimed_at      TEXT,
    -- Who claimed it (a daemon's lease holder id), to tell a crash from a live sender.
    claimed_by      TEXT,
    sent_at         TEXT,
    updated_at      TEXT    NOT NULL,
    UNIQUE (issue_id, subscriber_id)
) STRICT;

CREATE INDEX deliveries_by_status ON deliveries (issue_id, status, id);

-- A sent delivery is final: nothing may turn it back into something that would send again.
CREATE TRIGGER deliveries_sent_is_final
BEFORE UPDATE OF status ON deliveries
WHEN OLD.status = 'sent' AND NEW.status <> 'sent'
BEGIN
    SELECT RAISE(ABORT, 'a sent delivery is final');
END;

-- A delivery can only be claimed from pending.
CREATE TRIGGER deliveries_claim_from_pending
BEFORE UPDATE OF status ON deliveries
WHEN NEW.status = 'sending' AND OLD.status NOT IN ('pending', 'sending')
BEGIN
    SELECT RAISE(ABORT, 'only a pending delivery can be claimed');
END;

-- What each feed last returned, for conditional GET and for operators.
CREATE TABLE feed_state (
    url                  TEXT    PRIMARY KEY,
    name                 TEXT    NOT NULL,
    etag                 TEXT,
    last_modified        TEXT,
    -- Where a permanent redirect pointed.
    permanent_url        TEXT,
    last_success_at      TEXT,
    last_error           TEXT,
    last_error_at        TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    items_seen           INTEGER NOT NULL DEFAULT 0 CHECK (items_seen >= 0),
    -- The items of the last successful fetch (JSON), reused on 304 Not Modified.
    items_json           TEXT    NOT NULL DEFAULT '[]',
    first_seen_at        TEXT    NOT NULL
) STRICT;

-- Terms an editor wants featured next, in order.
CREATE TABLE term_queue (
    slug     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    added_at TEXT    NOT NULL
) STRICT;

-- Every schedule slot the daemon has acted on: one slot yields at most one issue.
CREATE TABLE schedule_slots (
    slot_key    TEXT    PRIMARY KEY,
    due_at      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('claimed', 'sent', 'skipped', 'missed', 'exhausted', 'failed')),
    issue_id    INTEGER REFERENCES issues (id),
    detail      TEXT    NOT NULL DEFAULT '',
    recorded_at TEXT    NOT NULL
) STRICT;

-- Leases (one sender at a time): renewed by a heartbeat, taken over when expired.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;
