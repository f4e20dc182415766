-- An agent an administrator removed: its jobs and tasks keep their history, its name is freed
-- (the row is renamed `name#id`), its credentials end.
ALTER TABLE agents ADD COLUMN removed_ms BIGINT;

-- Administrator tokens: a name for people and an optional expiry.
ALTER TABLE admin_tokens ADD COLUMN name TEXT;
ALTER TABLE admin_tokens ADD COLUMN expires_ms BIGINT;
