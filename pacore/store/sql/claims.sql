-- name: claim_trajectories
-- A worker claims a batch of pending trajectories (or re-claims its own, whose answer was lost), each fenced by its attempt, in one statement (rows locked in id order), and reads for each what its request needs, the checkpoint earlier attempts left (text, tokens, and token ids when every chunk has them), its run's free grant (read, not locked: a hint for whether a block can come from it) and what the attempt holds (a re-claim: the block it took before its answer was lost). A trajectory not to be generated (done, stale attempt, cancelled, paused) is not returned.
WITH want AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS w(id, attempt)),
mine AS (
  SELECT t.id, w.attempt FROM trajectory t JOIN want w ON w.id = t.id AND t.attempt = w.attempt
  WHERE t.status = 'pending' OR (t.status = 'running' AND t.worker_id = :worker)
  ORDER BY t.id FOR NO KEY UPDATE OF t
)
UPDATE trajectory t SET status = 'running', worker_id = :worker, started_at = now(),
       lease_until = now() + make_interval(secs => :lease)
FROM mine, round r JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id
WHERE t.id = mine.id AND t.attempt = mine.attempt AND r.id = t.round_id
  AND (t.status = 'pending' OR (t.status = 'running' AND t.worker_id = :worker))
  AND c.status = 'active' AND run.status = 'running'
RETURNING t.id AS trajectory_id, t.sampling_seed AS sampling_seed, r.input_messages AS messages,
          r.max_tokens AS round_max_tokens, c.config AS config, run.id AS run_id, c.id AS campaign_id,
          t.failed_attempts AS failed_attempts,
          run.tokens_granted - run.tokens_used - run.tokens_reserved AS free_grant, t.tokens_reserved AS held,
          (SELECT coalesce(string_agg(ch.text, '' ORDER BY ch.attempt, ch.seq), '') FROM chunk ch
           WHERE ch.trajectory_id = t.id AND ch.attempt < mine.attempt) AS checkpoint_text,
          (SELECT coalesce(sum(ch.tokens), 0) FROM chunk ch
           WHERE ch.trajectory_id = t.id AND ch.attempt < mine.attempt) AS checkpoint_tokens,
          (SELECT CASE WHEN bool_and(ch.token_ids IS NOT NULL) IS NOT FALSE
                       THEN coalesce((SELECT array_agg(u.id ORDER BY c2.attempt, c2.seq, u.n)
                                      FROM chunk c2, unnest(c2.token_ids) WITH ORDINALITY AS u(id, n)
                                      WHERE c2.trajectory_id = t.id AND c2.attempt < mine.attempt),
                                     CAST('{}' AS int[])) END
           FROM chunk ch WHERE ch.trajectory_id = t.id AND ch.attempt < mine.attempt) AS checkpoint_ids;

-- name: finish_and_settle
-- Write an attempt's result (done or failed), fenced by attempt, in one statement: stamp finish_seq (completion order), drop its checkpoint, append it to the ledger once and settle its run's tokens (an attempt that used more than it held grows its run's grant by the excess, charged to the campaign; `overrun` says how far that went past the problem or campaign budget).
WITH old AS (SELECT id, tokens_reserved FROM trajectory WHERE id = :id FOR NO KEY UPDATE),
fin AS (
  UPDATE trajectory t SET status = :status, content = :content, reasoning = :reasoning,
         finish_reason = :finish, prompt_tokens = :prompt, completion_tokens = :completion, error = :error,
         failed_attempts = t.failed_attempts + CAST(CAST(:status AS text) = 'failed' AS int),
         finish_seq = nextval('trajectory_finish_seq'),
         finished_at = now(), lease_until = NULL, tokens_reserved = 0, tokens_streamed = 0
  FROM old
  WHERE t.id = old.id AND t.attempt = :attempt AND t.status = 'running'
  RETURNING t.id, t.started_at, old.tokens_reserved AS reserved
),
dropped AS (DELETE FROM chunk c USING fin WHERE c.trajectory_id = fin.id),
ledger AS (
  INSERT INTO attempt (trajectory_id, attempt, worker_id, outcome, prompt_tokens, completion_tokens,
                       wasted_tokens, retries, error, started_at)
  SELECT fin.id, :attempt, :worker, :status, :spent_prompt, :spent, :wasted, :retries, :error, fin.started_at
  FROM fin
  ON CONFLICT (trajectory_id, attempt) DO NOTHING
  RETURNING id
),
runs AS (
  SELECT run.id, greatest(0, run.tokens_used + :spent + run.tokens_reserved - fin.reserved - run.tokens_granted)
           AS forced
  FROM run, fin, ledger WHERE run.id = :run
  FOR NO KEY UPDATE OF run
),
settled AS (
  UPDATE run SET tokens_used = run.tokens_used + :spent, tokens_reserved = run.tokens_reserved - fin.reserved,
         tokens_wasted = run.tokens_wasted + :wasted, prompt_tokens = run.prompt_tokens + :spent_prompt,
         tokens_granted = run.tokens_granted + runs.forced
  FROM fin, runs
  WHERE run.id = runs.id
  RETURNING run.campaign_id, runs.forced, greatest(0, run.tokens_granted - run.token_limit) AS past_limit
),
charged AS (
  UPDATE campaign c SET tokens_reserved = CASE WHEN c.campaign_budget IS NULL THEN 0
                                               ELSE c.tokens_reserved + settled.forced END
  FROM settled WHERE c.id = settled.campaign_id AND settled.forced > 0
  RETURNING greatest(0, c.tokens_used + c.tokens_reserved - c.campaign_budget) AS past_budget
)
SELECT EXISTS (SELECT 1 FROM fin) AS written, EXISTS (SELECT 1 FROM ledger) AS in_ledger,
       coalesce((SELECT reserved FROM fin), 0) AS reserved,
       greatest(coalesce((SELECT past_limit FROM settled), 0), coalesce((SELECT past_budget FROM charged), 0))
         AS overrun;

-- name: engine_lost_workers
-- How many distinct workers lost their engine while generating this trajectory since its run's quarantine was last lifted.
SELECT count(DISTINCT a.worker_id) FROM attempt a JOIN run ON run.id = :run
WHERE a.trajectory_id = :id AND a.outcome = 'engine_lost'
  AND a.finished_at > coalesce(run.quarantine_lifted_at, '-infinity');

-- name: quarantine_run
-- Quarantine a running run: it waits for an operator.
UPDATE run SET status = 'quarantined', reason = :reason WHERE id = :run AND status = 'running';
