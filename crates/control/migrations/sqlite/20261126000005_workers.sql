-- Workers: the Stripe account (and mode) each running run syncs, so runs of one account on
-- any node divide the account's rate budget among themselves (Store::share_account).
ALTER TABLE sync_runs ADD COLUMN budget_account TEXT;
CREATE INDEX sync_runs_budget_account ON sync_runs (budget_account) WHERE status = 'running';
