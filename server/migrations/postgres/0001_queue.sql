-- Agents, administrator tokens, jobs, tasks, task logs and uploads.
CREATE TABLE agents (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    enrol_hash TEXT UNIQUE,
    enrol_expires_ms BIGINT,
    connections TEXT NOT NULL DEFAULT '[]',
    version TEXT,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT
);

CREATE TABLE admin_tokens (
    hash TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    agent_id BIGINT NOT NULL REFERENCES agents(id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    step BIGINT NOT NULL DEFAULT 0,
    step_count BIGINT NOT NULL,
    steps TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT
);

CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    agent_id BIGINT NOT NULL REFERENCES agents(id),
    job_id BIGINT REFERENCES jobs(id),
    step BIGINT,
    connection TEXT NOT NULL,
    operation TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    run_after_ms BIGINT NOT NULL,
    fence BIGINT NOT NULL DEFAULT 0,
    lease_until_ms BIGINT,
    started_ms BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    progress_done BIGINT,
    progress_total BIGINT,
    result TEXT,
    error TEXT,
    completed_fence BIGINT,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT
);
CREATE INDEX tasks_ready ON tasks (agent_id, run_after_ms, id) WHERE state = 'queued';
CREATE INDEX tasks_leased ON tasks (lease_until_ms) WHERE state IN ('claimed', 'running');
CREATE INDEX tasks_job ON tasks (job_id, step);

CREATE TABLE task_logs (
    task_id BIGINT NOT NULL REFERENCES tasks(id),
    fence BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    lines TEXT NOT NULL,
    PRIMARY KEY (task_id, fence, seq)
);

CREATE TABLE uploads (
    id BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks(id),
    agent_id BIGINT NOT NULL REFERENCES agents(id),
    fence BIGINT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    received BIGINT NOT NULL DEFAULT 0,
    complete BIGINT NOT NULL DEFAULT 0,
    entries BIGINT,
    created_ms BIGINT NOT NULL,
    UNIQUE (task_id, fence, name)
);

CREATE TABLE upload_chunks (
    upload_id BIGINT NOT NULL REFERENCES uploads(id),
    start_at BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (upload_id, start_at)
);
