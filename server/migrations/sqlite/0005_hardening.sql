-- Lines per stored log chunk, so that an attempt's log can be capped without reading it.
ALTER TABLE task_logs ADD COLUMN line_count BIGINT NOT NULL DEFAULT 0;
UPDATE task_logs SET line_count = json_array_length(lines) WHERE json_valid(lines);
-- Agents' token generation: a reset moves it on, and older access tokens stop working.
ALTER TABLE agents ADD COLUMN token_gen BIGINT NOT NULL DEFAULT 0;
-- When an upload's content was removed after its retention (the row stays).
ALTER TABLE uploads ADD COLUMN pruned_ms BIGINT;
