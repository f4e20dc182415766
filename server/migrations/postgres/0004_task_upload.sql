-- The upload an export task finished with, in its own column (read by the job's synchronize),
-- taken from the results already stored.
ALTER TABLE tasks ADD COLUMN upload_id BIGINT;
UPDATE tasks SET upload_id = (result::jsonb ->> 'upload_id')::BIGINT
    WHERE operation = 'export' AND state = 'succeeded' AND result IS NOT NULL;
