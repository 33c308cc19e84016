-- A row whose attempts in one run are used up waits for the next run: `deferred_by` names the
-- run that gave up on it, so that run stops claiming it while the next run claims it at once.
ALTER TABLE deliveries ADD COLUMN deferred_by TEXT;
