-- Mail notifications and the figures of /metrics.
-- Mail notifications: how far each kind of event has been looked at, and mails not yet handed
-- to the SMTP server (kept until they go).
CREATE TABLE notices (
    kind TEXT PRIMARY KEY,
    cursor_ms BIGINT NOT NULL,
    sent_ms BIGINT NOT NULL
);

CREATE TABLE mail_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_ms);

-- The events are found by state and time.
CREATE INDEX jobs_finished ON jobs (state, finished_ms);
CREATE INDEX tasks_blocked ON tasks (finished_ms) WHERE state = 'blocked';
CREATE INDEX orders_failed ON orders (updated_ms) WHERE state = 'failed';
CREATE INDEX agents_seen ON agents (last_seen_ms);

-- The queue's depth by state and the orders not yet done, counted for /metrics.
CREATE INDEX tasks_active ON tasks (state) WHERE state IN ('queued', 'claimed', 'running', 'blocked');
CREATE INDEX orders_open ON orders (state) WHERE state IN ('waiting', 'pending', 'sent', 'retry');

-- What each agent measured of its connectors' runs (sent with its polls), for /metrics.
ALTER TABLE agents ADD COLUMN figures TEXT;
