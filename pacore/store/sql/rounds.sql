-- name: pending_runs_round_robin
-- Up to :limit pending runs of active campaigns, round-robin across campaigns (each campaign's runs in order; the turn goes on after campaign :after).
SELECT pending.id
FROM campaign c
CROSS JOIN LATERAL (SELECT run.id, row_number() OVER (ORDER BY run.id) AS rank FROM run
                    WHERE run.campaign_id = c.id AND run.status = 'pending' ORDER BY run.id LIMIT :limit) pending
WHERE c.status = 'active'
ORDER BY pending.rank, c.id <= :after, c.id
LIMIT :limit;

-- name: lock_pending_runs
-- Lock those of these runs still pending (skipping runs another scheduler is starting) with what starting them needs: what planning their round 1 reads (as win_round; a pending run has no trajectories, so no mean yet).
SELECT run.id AS run_id, run.campaign_id AS campaign_id, c.config AS config, p.messages AS messages,
       run.token_limit AS run_limit, run.tokens_granted AS run_granted, run.tokens_used AS run_used,
       run.tokens_reserved AS run_reserved, c.campaign_budget AS campaign_limit, c.tokens_used AS campaign_used,
       c.tokens_reserved AS campaign_reserved, NULL::numeric AS mean
FROM run JOIN problem p ON p.id = run.problem_id JOIN campaign c ON c.id = run.campaign_id
WHERE run.id = ANY(:ids) AND run.status = 'pending'
FOR NO KEY UPDATE OF run SKIP LOCKED;

-- name: start_run
-- A pending run starts.
UPDATE run SET status = 'running', started_at = now() WHERE id = :id;

-- name: insert_round
-- Create a run's round without trajectories of its own (a round 1 that links a pool's); idempotent on (run, index): nothing is returned when it exists already.
INSERT INTO round (run_id, index, k, is_final, max_tokens, input_messages, plan_reason)
VALUES (:run, :index, :k, :final, :max_tokens, CAST(:messages AS json), :reason)
ON CONFLICT (run_id, index) DO NOTHING
RETURNING id;

-- name: create_round
-- Create a run's round with its K own trajectories (indexes 0..:last, with their sampling seeds: a JSON list, null entries for none), each linked to the round at its index, in one statement; idempotent on (run, index): nothing is returned when the round exists already. Returns the round's id with each trajectory's id and index.
WITH new_round AS (
  INSERT INTO round (run_id, index, k, is_final, max_tokens, input_messages, plan_reason)
  VALUES (:run, :index, :k, :final, :max_tokens, CAST(:messages AS json), :reason)
  ON CONFLICT (run_id, index) DO NOTHING
  RETURNING id
),
created AS (
  INSERT INTO trajectory (campaign_id, round_id, index, sampling_seed)
  SELECT :campaign, new_round.id, i, (CAST(:seeds AS jsonb) ->> i)::bigint
  FROM new_round, generate_series(0, :last) AS i
  ORDER BY i
  RETURNING round_id, id, index
),
linked AS (
  INSERT INTO round_trajectory (round_id, position, trajectory_id) SELECT round_id, index, id FROM created
)
SELECT round_id, id, index FROM created;

-- name: link_pool_trajectories
-- A round uses trajectories of a pool round: the pool indexes :indices, at positions 0, 1, ... in that (sample) order.
INSERT INTO round_trajectory (round_id, position, trajectory_id)
SELECT :round, s.position - 1, t.id
FROM unnest(CAST(:indices AS int[])) WITH ORDINALITY AS s(pool_index, position)
JOIN trajectory t ON t.round_id = :pool AND t.index = s.pool_index;

-- name: find_pool_round
-- A round-1 pool of at least :n trajectories for the same problem text, model and sampling (this campaign's first).
SELECT r.id
FROM run pr JOIN problem p ON p.id = pr.problem_id JOIN campaign c ON c.id = pr.campaign_id
JOIN round r ON r.run_id = pr.id AND r.index = 1
WHERE pr.sample = -1 AND pr.status IN ('running', 'done') AND r.k >= :n
  AND p.messages::jsonb = CAST(:messages AS jsonb) AND c.config ->> 'model' = :model
  AND (c.config ->> 'temperature')::float = :temperature AND (c.config ->> 'top_p')::float = :top_p
  AND coalesce(c.config ->> 'max_tokens', '') = :max_tokens
ORDER BY (pr.campaign_id = :campaign) DESC, r.id
LIMIT 1;

-- name: insert_pool_run
-- Create the pool run (sample -1) of a run's problem; nothing is returned when this campaign's exists already.
INSERT INTO run (campaign_id, problem_id, sample, status, reason, started_at)
SELECT campaign_id, problem_id, -1, 'running', :reason, now() FROM run WHERE id = :run
ON CONFLICT (problem_id, sample) DO NOTHING
RETURNING id;

-- name: own_pool_round
-- The round 1 of the pool run of a run's problem.
SELECT r.id FROM run pr JOIN run me ON me.problem_id = pr.problem_id AND me.id = :run
JOIN round r ON r.run_id = pr.id AND r.index = 1
WHERE pr.sample = -1;

-- name: win_round
-- Advance a round exactly once, in one statement: the guarded update wins only while the round is generating and nothing of it is unfinished. Returns what deciding its run's next step needs: how long its last trajectory has been finished (the round hop so far), its campaign and settings, the problem's messages, its sample; its outcomes in completion order, each one's reasoning only when it has no content (by finish_seq; a round drawn from a pool in its sample (position) order; rows finished before finish_seq existed by position); and what planning the run's next round reads, without a lock (a plan only estimates: blocks enforce the budget): the run's and its campaign's token counters, and the run's mean completion tokens per finished trajectory so far.
UPDATE round SET status = 'done', finished_at = now()
FROM run JOIN problem p ON p.id = run.problem_id JOIN campaign c ON c.id = run.campaign_id
WHERE round.id = :id AND round.status = 'generating' AND run.id = round.run_id
  -- each of the round's K trajectories looked up by its key: a join here may be planned as a scan of
  -- every unfinished trajectory (all rounds'), when the statistics still say there are few
  AND NOT EXISTS (SELECT 1 FROM round_trajectory rt WHERE rt.round_id = :id
                  AND (SELECT t.status FROM trajectory t WHERE t.id = rt.trajectory_id) IN ('pending', 'running'))
RETURNING round.run_id AS run_id, round.index AS index, round.is_final AS is_final,
          (SELECT extract(epoch FROM clock_timestamp() - max(t.finished_at)) FROM round_trajectory rt
           JOIN trajectory t ON t.id = rt.trajectory_id WHERE rt.round_id = :id) AS waited,
          run.campaign_id AS campaign_id, c.config AS config, p.messages AS messages, run.sample AS sample,
          -- a trajectory's reasoning only when it has no content: only then may a reference use it
          -- (pass_truncated), and it is most of a trajectory's text (megabytes a round at the paper's scale)
          (SELECT json_agg(json_build_object('index', rt.position, 'trajectory_id', t.id, 'status', t.status,
                                             'content', t.content,
                                             'reasoning', CASE WHEN coalesce(t.content, '') = '' THEN t.reasoning END,
                                             'finish_reason', t.finish_reason)
                           ORDER BY CASE WHEN t.round_id = rt.round_id THEN t.finish_seq END NULLS LAST, rt.position)
           FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id WHERE rt.round_id = :id) AS outcomes,
          run.token_limit AS run_limit, run.tokens_granted AS run_granted, run.tokens_used AS run_used,
          run.tokens_reserved AS run_reserved, c.campaign_budget AS campaign_limit, c.tokens_used AS campaign_used,
          c.tokens_reserved AS campaign_reserved,
          -- each of the run's rounds, then its trajectories by their round (OFFSET 0: looked up per round,
          -- never joined by a scan), their status a filter of the aggregate: planned on stale statistics
          -- (few done), a join scanned every done trajectory of every campaign
          (SELECT avg(x.completion_tokens) FILTER (WHERE x.status = 'done') FROM round r
           CROSS JOIN LATERAL (SELECT t.completion_tokens, t.status FROM trajectory t WHERE t.round_id = r.id
                               OFFSET 0) x
           WHERE r.run_id = run.id) AS mean;

-- name: lock_run
-- Lock a run that has not ended, before its campaign's row (the order every grant takes them). A run is ended for want of budget only on counters read after this: a budget change holds the locks of every unfinished run until it commits, and a raise resumes the runs that had ended before it.
SELECT id FROM run WHERE id = :id AND status IN ('pending', 'running', 'quarantined') FOR NO KEY UPDATE;

-- name: run_tokens
-- A run's token counters and its campaign's, as planning reads them (`win_round`, `lock_pending_runs`).
SELECT run.token_limit AS run_limit, run.tokens_granted AS run_granted, run.tokens_used AS run_used,
       run.tokens_reserved AS run_reserved, c.campaign_budget AS campaign_limit, c.tokens_used AS campaign_used,
       c.tokens_reserved AS campaign_reserved
FROM run JOIN campaign c ON c.id = run.campaign_id WHERE run.id = :id;

-- name: record_round_decision
-- Store how a round advanced, in one statement: the reference each of its trajectories gives the next round (null: none), its official response order, its completion order and the decision.
WITH refs AS (
  UPDATE trajectory t SET message = v.message
  FROM unnest(CAST(:ids AS bigint[]), CAST(:messages AS text[])) AS v(id, message) WHERE t.id = v.id
)
UPDATE round SET response_order = CAST(:order AS jsonb), finish_order = CAST(:finished AS jsonb), decision = :reason
WHERE id = :id;

-- name: fail_round
-- A round failed (its final trajectory failed).
UPDATE round SET status = 'failed' WHERE id = :id;
