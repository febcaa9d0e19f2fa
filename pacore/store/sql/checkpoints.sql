-- name: discard_checkpoint
-- Forget a trajectory's checkpoint (an attempt starts afresh), fenced by attempt.
DELETE FROM chunk c USING trajectory t WHERE c.trajectory_id = :id AND t.id = :id AND t.attempt = :attempt;

-- name: record_streamed
-- Record what running attempts have streamed (settlement of a lost attempt counts it); returns the ones still running.
UPDATE trajectory t SET tokens_streamed = greatest(t.tokens_streamed, c.spent)
FROM unnest(CAST(:tids AS bigint[]), CAST(:attempts AS int[]), CAST(:spent AS int[])) AS c(tid, attempt, spent)
WHERE t.id = c.tid AND t.attempt = c.attempt AND t.status = 'running'
RETURNING t.id;

-- name: append_chunk
-- Append one checkpoint chunk (its text, tokens and token ids, null when the engine sent none); a chunk already written (its answer lost) is not written twice.
INSERT INTO chunk (trajectory_id, attempt, seq, text, tokens, token_ids)
VALUES (:tid, :attempt, :seq, :text, :tokens, CAST(:token_ids AS int[]))
ON CONFLICT (trajectory_id, attempt, seq) DO NOTHING;
