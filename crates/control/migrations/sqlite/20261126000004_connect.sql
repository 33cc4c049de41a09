-- Stripe Connect: a configuration may also sync the connected accounts of its key's platform
-- (each into the same tables, its rows carrying its own account_id). Off for every existing
-- configuration.
ALTER TABLE configurations ADD COLUMN include_connected_accounts BOOLEAN NOT NULL DEFAULT 0;
