-- The scheduler: the last slot each schedule came due at, so missed slots (while no node
-- was up) collapse into one run and several nodes never queue the same slot twice.
ALTER TABLE schedules ADD COLUMN last_due_at TIMESTAMPTZ;
CREATE INDEX sync_runs_queued ON sync_runs (status, id);
