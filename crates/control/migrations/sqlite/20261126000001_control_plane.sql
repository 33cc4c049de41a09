-- Codeless Sync control plane: projects, configurations, schedules, sync runs.
-- Same schema as migrations/postgres, in SQLite's dialect. Secrets (database URLs, Stripe
-- keys) are stored sealed (`v1:` + base64 of AES-256-GCM nonce, ciphertext and tag).

CREATE TABLE projects (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('postgres', 'sqlite')),
    database_url_sealed TEXT NOT NULL,
    schema_name         TEXT NOT NULL DEFAULT 'stripe',
    active              BOOLEAN NOT NULL DEFAULT TRUE,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

CREATE TABLE configurations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL,
    project_id        INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    provider          TEXT NOT NULL DEFAULT 'stripe' CHECK (provider IN ('stripe')),
    stripe_key_sealed TEXT NOT NULL,
    key_kind          TEXT NOT NULL CHECK (key_kind IN ('restricted', 'secret')),
    key_mode          TEXT NOT NULL CHECK (key_mode IN ('test', 'live')),
    key_masked        TEXT NOT NULL,
    data_types        TEXT NOT NULL,
    stripe_api_base   TEXT,
    active            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX configurations_project ON configurations (project_id);

CREATE TABLE schedules (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    configuration_id INTEGER NOT NULL REFERENCES configurations (id) ON DELETE CASCADE,
    cadence          TEXT NOT NULL CHECK (cadence IN ('hourly', 'daily', 'weekly', 'monthly', 'cron')),
    cron_expression  TEXT,
    mode             TEXT NOT NULL CHECK (mode IN ('full', 'incremental')),
    active           BOOLEAN NOT NULL DEFAULT TRUE,
    paused_reason    TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CHECK ((cadence = 'cron') = (cron_expression IS NOT NULL))
);
CREATE INDEX schedules_configuration ON schedules (configuration_id);

CREATE TABLE sync_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    configuration_id INTEGER NOT NULL REFERENCES configurations (id) ON DELETE CASCADE,
    trigger_kind     TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'schedule', 'webhook', 'cli')),
    mode             TEXT NOT NULL CHECK (mode IN ('full', 'incremental')),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'canceled')),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    stats            TEXT NOT NULL DEFAULT '{}',
    errors           TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX sync_runs_configuration ON sync_runs (configuration_id, id);
CREATE INDEX sync_runs_status ON sync_runs (status);
