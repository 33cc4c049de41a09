-- Workers: the Stripe account (and mode) each running run syncs, so runs of one account on
-- any node divide the account's rate budget among themselves (Store::share_account); and the
-- lease its worker holds it under, so a node configured with a shorter lease never takes over
-- a run that is alive under a longer one.
ALTER TABLE sync_runs ADD COLUMN budget_account TEXT;
ALTER TABLE sync_runs ADD COLUMN lease_seconds BIGINT;
CREATE INDEX sync_runs_budget_account ON sync_runs (budget_account) WHERE status = 'running';
