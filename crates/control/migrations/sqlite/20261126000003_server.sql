-- The server's needs: API tokens, dashboard users and their sessions, run leases (worker,
-- heartbeat, cancel request) and per-configuration webhook secrets. Same schema as
-- migrations/postgres, in SQLite's dialect.

-- REST API tokens `cls_<prefix>_<secret>`: only the public prefix and an argon2id hash of
-- the whole token are kept.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);

-- Dashboard users: argon2id password hashes.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Dashboard sessions: the SHA-256 of the session token (a cookie), never the token.
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Run leases: the worker holding a running run and when it last said it was alive; a run
-- whose heartbeat is older than the lease is taken over by another worker.
ALTER TABLE sync_runs ADD COLUMN worker_id TEXT;
ALTER TABLE sync_runs ADD COLUMN heartbeat_at TEXT;
ALTER TABLE sync_runs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;

-- The webhook signing secret (whsec_…), sealed like the Stripe key.
ALTER TABLE configurations ADD COLUMN webhook_secret_sealed TEXT;
