-- Refusals are audited as one record per client and kind per interval, with how many there were.
ALTER TABLE audit_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
