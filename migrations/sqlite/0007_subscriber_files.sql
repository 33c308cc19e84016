-- The subscriber files imported before a send, with a hash of their content: a file that has
-- not changed since its last import is not imported again.
CREATE TABLE subscriber_files (
    path        TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
    rows        INTEGER NOT NULL CHECK (rows >= 0),
    imported_at TEXT NOT NULL
) STRICT;
