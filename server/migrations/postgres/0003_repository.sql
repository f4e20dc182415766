-- The identity repository: collected entries with their history, links of accounts to
-- identities, synchronisations, provisioning orders; declared jobs and their runs.

-- Every version of every collected entry. The current one has `valid_to` NULL; a change closes
-- it and adds the next; a deletion closes it and adds nothing.
CREATE TABLE entries (
    id BIGSERIAL PRIMARY KEY,
    connection TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    key TEXT NOT NULL,
    attrs TEXT NOT NULL,
    hash BIGINT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT,
    sync_id BIGINT NOT NULL,
    closed_by BIGINT
);
CREATE UNIQUE INDEX entries_current ON entries (connection, entity_type, key) WHERE valid_to IS NULL;
CREATE INDEX entries_key ON entries (connection, key);
CREATE INDEX entries_changed ON entries (connection, sync_id);
CREATE INDEX entries_closed ON entries (connection, closed_by);

-- What each synchronisation did; one row per upload, so that a replay applies nothing twice.
CREATE TABLE syncs (
    id BIGSERIAL PRIMARY KEY,
    upload_id BIGINT UNIQUE,
    job_id BIGINT,
    connection TEXT NOT NULL,
    mode TEXT NOT NULL,
    report TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Which identity (a key of the authoritative connection) an account belongs to.
CREATE TABLE links (
    connection TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    key TEXT NOT NULL,
    identity TEXT,
    situation TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (connection, entity_type, key)
);
CREATE INDEX links_identity ON links (connection, identity);

-- Provisioning orders and what became of them.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    job_id BIGINT,
    connection TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    key TEXT NOT NULL,
    identity TEXT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    message TEXT,
    task_id BIGINT,
    next_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX orders_ready ON orders (connection, state, next_ms);
CREATE INDEX orders_task ON orders (task_id);
CREATE INDEX orders_job ON orders (job_id);
CREATE INDEX orders_identity ON orders (identity, connection);

-- Declared jobs: which run they belong to, and the schedule's next firing.
ALTER TABLE jobs ADD COLUMN definition TEXT;
ALTER TABLE jobs ADD COLUMN mode TEXT;
ALTER TABLE jobs ADD COLUMN blocked TEXT;
CREATE INDEX jobs_definition ON jobs (definition, state);

CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    next_ms BIGINT NOT NULL
);

-- How far provisioning of a target has read the identities' and the target's changes.
CREATE TABLE provision_marks (
    connection TEXT PRIMARY KEY,
    source_sync BIGINT NOT NULL,
    target_sync BIGINT NOT NULL
);
