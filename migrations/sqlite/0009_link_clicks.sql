-- Clicks on an issue's news links through Herald's redirect (`[tracking] clicks`), counted
-- per link only: never who clicked.
CREATE TABLE link_clicks (
    issue_id  INTEGER NOT NULL REFERENCES issues (id) ON DELETE RESTRICT,
    position  INTEGER NOT NULL CHECK (position >= 0),
    clicks    INTEGER NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    PRIMARY KEY (issue_id, position)
) STRICT;
