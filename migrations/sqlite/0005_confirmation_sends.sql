-- Confirmation emails sent, per address: at most three an hour, whatever the client address,
-- across restarts and across web instances on one database.
CREATE TABLE confirmation_sends (
    email_key TEXT NOT NULL,
    sent_at   TEXT NOT NULL
) STRICT;
CREATE INDEX confirmation_sends_by_address ON confirmation_sends (email_key, sent_at);
