-- name: claim_trajectories
-- A worker claims a batch of pending trajectories (or re-claims its own, whose answer was lost), each fenced by its attempt, in one statement (rows locked in id order), and reads for each what its request needs, the checkpoint earlier attempts left (text, tokens, and token ids when every chunk has them), its run's free grant (read, not locked: a hint for whether a block can come from it), whether its campaign has no budget (a hint for where its run's grant is taken) and what the attempt holds (a re-claim: the block it took before its answer was lost). A trajectory not to be generated (done, stale attempt, cancelled, paused) is not returned.
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
          c.campaign_budget IS NULL AS unbudgeted,
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

-- name: finish_attempts
-- Write attempts' results (done or failed), each fenced by its attempt, in one statement (a worker's group commit; trajectories then runs locked in id order): stamp finish_seq in the order given (completion order), drop their checkpoints, append each to the ledger once and settle the runs' tokens. An attempt that used more than it held grows its run's grant by the excess, charged to the campaign, as if the attempts of a run were settled one after another in the order given: the grant grows by the highest point the run's usage less reservations climbs to past it. `overrun` (on an attempt that used more than it held) says how far the run's grant then is past the problem budget, or the campaign's use past the campaign budget. Returns one row per attempt given, in their order.
WITH given AS (
  SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), CAST(:runs AS bigint[]),
                       CAST(:workers AS text[]), CAST(:statuses AS text[]), CAST(:contents AS text[]),
                       CAST(:reasonings AS text[]), CAST(:finishes AS text[]), CAST(:prompts AS int[]),
                       CAST(:completions AS int[]), CAST(:errors AS text[]), CAST(:spent AS bigint[]),
                       CAST(:wasted AS bigint[]), CAST(:spent_prompt AS bigint[]), CAST(:retries AS int[]))
    WITH ORDINALITY AS g(id, attempt, run, worker, status, content, reasoning, finish, prompt, completion, error,
                         spent, wasted, spent_prompt, retries, ord)
),
old AS (
  SELECT t.id, t.tokens_reserved FROM trajectory t WHERE t.id = ANY(CAST(:ids AS bigint[]))
  ORDER BY t.id FOR NO KEY UPDATE
),
seq AS (  -- one number per attempt given, handed out in their order
  SELECT array_agg(n ORDER BY n) AS n FROM (SELECT nextval('trajectory_finish_seq') AS n FROM given) s
),
fin AS (
  UPDATE trajectory t SET status = g.status, content = g.content, reasoning = g.reasoning,
         finish_reason = g.finish, prompt_tokens = g.prompt, completion_tokens = g.completion, error = g.error,
         failed_attempts = t.failed_attempts + CAST(g.status = 'failed' AS int),
         finish_seq = seq.n[g.ord],
         finished_at = now(), lease_until = NULL, tokens_reserved = 0, tokens_streamed = 0
  FROM given g, old, seq
  WHERE t.id = g.id AND old.id = g.id AND t.attempt = g.attempt AND t.status = 'running'
  RETURNING t.id, t.started_at, old.tokens_reserved AS reserved, g.ord
),
dropped AS (DELETE FROM chunk c USING fin WHERE c.trajectory_id = fin.id),
ledger AS (
  INSERT INTO attempt (trajectory_id, attempt, worker_id, outcome, prompt_tokens, completion_tokens,
                       wasted_tokens, retries, error, started_at)
  SELECT fin.id, g.attempt, g.worker, g.status, g.spent_prompt, g.spent, g.wasted, g.retries, g.error,
         fin.started_at
  FROM fin JOIN given g ON g.ord = fin.ord
  ORDER BY fin.id
  ON CONFLICT (trajectory_id, attempt) DO NOTHING
  RETURNING trajectory_id
),
settling AS (  -- the attempts entered in the ledger now, with how far each takes its run past what it held
  SELECT g.run, g.spent, g.wasted, g.spent_prompt, fin.reserved,
         sum(g.spent - fin.reserved) OVER (PARTITION BY g.run ORDER BY g.ord) AS climb
  FROM fin JOIN given g ON g.ord = fin.ord JOIN ledger l ON l.trajectory_id = fin.id
),
per_run AS (
  SELECT run, sum(spent) AS spent, sum(reserved) AS reserved, sum(wasted) AS wasted,
         sum(spent_prompt) AS prompt, max(climb) AS peak
  FROM settling GROUP BY run
),
runs AS (
  SELECT run.id, greatest(0, run.tokens_used + run.tokens_reserved - run.tokens_granted + p.peak) AS forced
  FROM run JOIN per_run p ON p.run = run.id
  ORDER BY run.id
  FOR NO KEY UPDATE OF run
),
settled AS (
  UPDATE run SET tokens_used = run.tokens_used + p.spent, tokens_reserved = run.tokens_reserved - p.reserved,
         tokens_wasted = run.tokens_wasted + p.wasted, prompt_tokens = run.prompt_tokens + p.prompt,
         tokens_granted = run.tokens_granted + runs.forced
  FROM per_run p JOIN runs ON runs.id = p.run
  WHERE run.id = p.run
  RETURNING run.id, run.campaign_id, runs.forced, greatest(0, run.tokens_granted - run.token_limit) AS past_limit
),
charged AS (
  UPDATE campaign c SET tokens_reserved = CASE WHEN c.campaign_budget IS NULL THEN 0
                                               ELSE c.tokens_reserved + f.forced END
  FROM (SELECT campaign_id, sum(forced) AS forced FROM settled GROUP BY campaign_id) f
  WHERE c.id = f.campaign_id AND f.forced > 0
  RETURNING c.id, greatest(0, c.tokens_used + c.tokens_reserved - c.campaign_budget) AS past_budget
)
SELECT fin.id IS NOT NULL AS written, l.trajectory_id IS NOT NULL AS in_ledger,
       coalesce(fin.reserved, 0) AS reserved,
       CASE WHEN l.trajectory_id IS NOT NULL AND g.spent > fin.reserved
            THEN greatest(coalesce(s.past_limit, 0), coalesce(ch.past_budget, 0)) ELSE 0 END AS overrun
FROM given g
LEFT JOIN fin ON fin.ord = g.ord
LEFT JOIN ledger l ON l.trajectory_id = fin.id
LEFT JOIN settled s ON s.id = g.run
LEFT JOIN charged ch ON ch.id = s.campaign_id
ORDER BY g.ord;

-- name: engine_lost_workers
-- How many distinct workers lost their engine while generating this trajectory since its run's quarantine was last lifted.
SELECT count(DISTINCT a.worker_id) FROM attempt a JOIN run ON run.id = :run
WHERE a.trajectory_id = :id AND a.outcome = 'engine_lost'
  AND a.finished_at > coalesce(run.quarantine_lifted_at, '-infinity');

-- name: quarantine_run
-- Quarantine a running run: it waits for an operator.
UPDATE run SET status = 'quarantined', reason = :reason WHERE id = :run AND status = 'running';
