-- The upload an export task finished with, in its own column (read by the job's synchronize),
-- taken from the results already stored.
ALTER TABLE tasks ADD COLUMN upload_id BIGINT;
UPDATE tasks SET upload_id = CAST(json_extract(result, '$.upload_id') AS INTEGER)
    WHERE operation = 'export' AND state = 'succeeded' AND json_valid(result);
