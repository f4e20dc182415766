-- Runs launched from the browser through the agent. The server records the launch here and
-- hands the owning agent a signed, short-lived token for it on its held poll; the agent checks
-- the token and its own allow-list and answers. A launch is delivered once and answered once:
-- a replayed token finds it already answered.
--   state: waiting (not yet delivered), delivered, accepted, refused
--   A waiting or delivered launch past `expires_ms` was not picked up.
CREATE TABLE launches (
    id TEXT PRIMARY KEY,
    agent_id BIGINT NOT NULL REFERENCES agents (id),
    job TEXT NOT NULL,
    incremental BIGINT NOT NULL,
    dry_run BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    answered_ms BIGINT,
    reason TEXT,
    job_id BIGINT
);
CREATE INDEX launches_waiting ON launches (agent_id, state, expires_ms);
