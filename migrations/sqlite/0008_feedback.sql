-- What came back after a send: bounces reported after the SMTP session (delivery status
-- notifications), complaints (abuse reports) and unsubscribe requests by email. Each report
-- is counted once however often it is read (report_id: its Message-ID or the SHA-256 of its
-- bytes), and recorded against the ledger row it is about when that is known.
CREATE TABLE feedback (
    id            INTEGER PRIMARY KEY,
    report_id     TEXT    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL
                  CHECK (kind IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe')),
    delivery_id   INTEGER REFERENCES deliveries (id) ON DELETE RESTRICT,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE RESTRICT,
    issue_id      INTEGER REFERENCES issues (id) ON DELETE RESTRICT,
    status_code   TEXT,
    reason        TEXT    NOT NULL,
    report        TEXT    NOT NULL,
    received_at   TEXT    NOT NULL
) STRICT;

CREATE INDEX feedback_by_subscriber ON feedback (subscriber_id, kind);
CREATE INDEX feedback_by_issue ON feedback (issue_id, kind);
