-- Finding an agent's cancelled tasks without a scan.
CREATE INDEX tasks_cancel ON tasks (agent_id) WHERE cancel_requested = 1;
