-- An agent an administrator removed: its jobs and tasks keep their history, its name is freed
-- (the row is renamed `name#id`), its credentials end.
ALTER TABLE agents ADD COLUMN removed_ms BIGINT;

-- Administrator tokens: a name for people and an optional expiry.
ALTER TABLE admin_tokens ADD COLUMN name TEXT;
ALTER TABLE admin_tokens ADD COLUMN expires_ms BIGINT;

-- Where each connection's incremental export starts: the cursor of the last export the server
-- synchronized (an export nobody synchronized moves nothing). Handed to incremental exports.
CREATE TABLE cursors (
    connection TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    upload_id BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- Connection files an agent refused, with why (JSON), as its last hello listed them.
ALTER TABLE agents ADD COLUMN refused TEXT NOT NULL DEFAULT '[]';
