-- The share of its Stripe account's rate budget each running run has applied (the number of
-- live runs of the account it divides the account's limits by). A run starting beside others
-- of its account waits until each of them applies at least the new count, so the account's
-- limits hold from the newcomer's first request, not one heartbeat later (Store::share_account).
ALTER TABLE sync_runs ADD COLUMN budget_share INTEGER;
-- A configuration never has two running runs: the claim already keeps it so under a lock on
-- the configuration's row; this makes the database refuse any path that would not. A state
-- that somehow holds two (edited by hand) keeps the newest and records the others failed,
-- rather than failing to migrate.
UPDATE sync_runs SET status = 'failed', ended_at = COALESCE(heartbeat_at, started_at),
    errors = '[{"data_type": null, "message": "another run of this configuration was running at the same time; this one was stopped when cls was upgraded: sync again if its data is missing"}]'
WHERE status = 'running' AND id NOT IN
    (SELECT MAX(id) FROM sync_runs WHERE status = 'running' GROUP BY configuration_id);
CREATE UNIQUE INDEX sync_runs_one_running_per_configuration
    ON sync_runs (configuration_id) WHERE status = 'running';
