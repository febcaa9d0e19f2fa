-- name: fence_attempts
-- Fence off the current attempt of the chosen trajectories (the ids in :ids, a campaign's, or some rounds'; in a status of :from; at :attempt when given) and start the next: status :to, attempt + 1, unheld and unpublished. A running attempt ends in the same statement: appended to the ledger once (:outcome, preempted) and settled on its run (its blocks go back; what it spent counts: :spent and :wasted when its worker says, else all it held, since no request of it could ask the engine for more and its end was not seen: all wasted when cancelled, otherwise the part not checkpointed). With :failure the attempt's own request failed: it counts toward the trajectory's failed attempts (a failed trajectory retried starts at 0 again); with :discard its checkpoint goes (the next attempt starts afresh); with :waiting it waits for budget (published again once its run and campaign have a block for it). Returns each fenced trajectory's old attempt.
WITH old AS (
  SELECT t.id, t.attempt, t.status, t.campaign_id, r.run_id, t.worker_id, t.started_at,
         t.tokens_reserved AS reserved, t.tokens_streamed AS streamed,
         (SELECT coalesce(sum(c.tokens), 0) FROM chunk c WHERE c.trajectory_id = t.id AND c.attempt = t.attempt)
           AS checkpointed
  FROM trajectory t JOIN round r ON r.id = t.round_id
  WHERE (CAST(:ids AS bigint[]) IS NULL OR t.id = ANY(CAST(:ids AS bigint[])))
    AND (CAST(:campaign AS bigint) IS NULL OR t.campaign_id = CAST(:campaign AS bigint))
    AND (CAST(:rounds AS bigint[]) IS NULL OR t.round_id = ANY(CAST(:rounds AS bigint[])))
    AND (CAST(:attempt AS bigint) IS NULL OR t.attempt = CAST(:attempt AS bigint))
    AND t.status = ANY(CAST(:from AS text[]))
  ORDER BY t.id
  FOR NO KEY UPDATE OF t
),
bumped AS (
  UPDATE trajectory t SET status = :to, attempt = t.attempt + 1, worker_id = NULL, lease_until = NULL,
         published_at = NULL, tokens_reserved = 0, tokens_streamed = 0, finish_seq = NULL,
         error = CASE WHEN CAST(:failure AS boolean) THEN :error END,
         failed_attempts = CASE WHEN old.status = 'failed' THEN 0
                                ELSE t.failed_attempts + CAST(CAST(:failure AS boolean) AS int) END,
         waiting_since = CASE WHEN CAST(:waiting AS boolean) THEN now() END,
         finished_at = CASE WHEN CAST(:to AS text) = 'cancelled' THEN now() END
  FROM old WHERE t.id = old.id
),
dropped AS (DELETE FROM chunk c USING old WHERE CAST(:discard AS boolean) AND c.trajectory_id = old.id),
ended AS (
  SELECT old.*, coalesce(CAST(:spent AS bigint), old.reserved) AS used
  FROM old WHERE old.status = 'running'
),
ledger AS (
  INSERT INTO attempt (trajectory_id, attempt, worker_id, outcome, preempted, prompt_tokens, completion_tokens,
                       wasted_tokens, retries, error, started_at)
  SELECT e.id, e.attempt, coalesce(CAST(:worker AS text), e.worker_id), :outcome,
         CAST(:outcome AS text) <> 'failed',
         coalesce(CAST(:prompt AS bigint), 0), e.used,
         coalesce(CAST(:wasted AS bigint),
                  CASE WHEN CAST(:outcome AS text) = 'cancelled' THEN e.used
                       ELSE greatest(0, e.used - e.checkpointed) END),
         0, :error, e.started_at
  FROM ended e
  ON CONFLICT (trajectory_id, attempt) DO NOTHING
  RETURNING trajectory_id, completion_tokens, wasted_tokens, prompt_tokens
),
spent AS (
  SELECT e.run_id, sum(l.completion_tokens) AS used, sum(e.reserved) AS reserved,
         sum(l.wasted_tokens) AS wasted, sum(l.prompt_tokens) AS prompt
  FROM ended e JOIN ledger l ON l.trajectory_id = e.id GROUP BY e.run_id
),
runs AS (
  SELECT run.id, run.campaign_id,
         greatest(0, run.tokens_used + s.used + run.tokens_reserved - s.reserved - run.tokens_granted) AS forced
  FROM run JOIN spent s ON s.run_id = run.id
  ORDER BY run.id
  FOR NO KEY UPDATE OF run
),
settled AS (
  UPDATE run SET tokens_used = run.tokens_used + s.used, tokens_reserved = run.tokens_reserved - s.reserved,
         tokens_wasted = run.tokens_wasted + s.wasted, prompt_tokens = run.prompt_tokens + s.prompt,
         tokens_granted = run.tokens_granted + runs.forced
  FROM spent s JOIN runs ON runs.id = s.run_id
  WHERE run.id = s.run_id
  RETURNING run.campaign_id, runs.forced, greatest(0, run.tokens_granted - run.token_limit) AS past_limit
),
charged AS (
  UPDATE campaign c SET tokens_reserved = CASE WHEN c.campaign_budget IS NULL THEN 0
                                               ELSE c.tokens_reserved + f.forced END
  FROM (SELECT campaign_id, sum(forced) AS forced FROM settled GROUP BY campaign_id) f
  WHERE c.id = f.campaign_id AND f.forced > 0
  RETURNING greatest(0, c.tokens_used + c.tokens_reserved - c.campaign_budget) AS past_budget
)
SELECT old.id AS trajectory_id, old.attempt, old.status, old.run_id, old.campaign_id, old.reserved,
       old.streamed, old.checkpointed,
       EXISTS (SELECT 1 FROM ledger l WHERE l.trajectory_id = old.id) AS in_ledger,
       greatest((SELECT coalesce(max(past_limit), 0) FROM settled),
                (SELECT coalesce(max(past_budget), 0) FROM charged)) AS overrun
FROM old ORDER BY old.id;

-- name: end_runs
-- Runs that have not ended (the ids in :ids, or a campaign's) end with :status, a reason and their final conclusion, in one statement: each one's usage moves to its campaign and the rest of its grant goes back (which locks the campaign row, so that a completion check after it sees every run that ended before). Returns the ids of the runs it ended.
WITH r AS (
  SELECT id, campaign_id, tokens_used, tokens_granted FROM run
  WHERE (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))
    AND (CAST(:campaign AS bigint) IS NULL OR campaign_id = CAST(:campaign AS bigint))
    AND status IN ('pending', 'running', 'quarantined')
  ORDER BY id
  FOR NO KEY UPDATE
),
ended AS (
  UPDATE run SET status = :status, reason = :reason, final_message = :message, answer = :answer,
         finished_at = now(), tokens_granted = r.tokens_used
  FROM r WHERE run.id = r.id
  RETURNING run.id
),
moved AS (
  UPDATE campaign c SET tokens_used = c.tokens_used + m.used,
         tokens_reserved = CASE WHEN c.campaign_budget IS NULL THEN 0 ELSE c.tokens_reserved - m.granted END
  FROM (SELECT campaign_id, sum(tokens_used) AS used, sum(tokens_granted) AS granted FROM r GROUP BY campaign_id) m
  WHERE c.id = m.campaign_id
)
SELECT id FROM ended ORDER BY id;

-- name: reopen_runs
-- Failed or out-of-budget runs run again (a retry), in one statement: the inverse of end_runs, so that ending them again counts once (their usage goes back from the campaign's used to a grant each run holds). A run that never started a round is pending again (the dispatch tick starts it). Returns the ids of the runs it reopened.
WITH r AS (
  SELECT id, campaign_id, tokens_used, EXISTS (SELECT 1 FROM round WHERE round.run_id = run.id) AS started
  FROM run WHERE id = ANY(CAST(:ids AS bigint[])) AND status IN ('failed', 'budget_exhausted')
  ORDER BY id FOR NO KEY UPDATE
),
reopened AS (
  UPDATE run SET status = CASE WHEN r.started THEN 'running' ELSE 'pending' END, reason = NULL,
         finished_at = NULL, answer = NULL, final_message = NULL, tokens_granted = r.tokens_used
  FROM r WHERE run.id = r.id
  RETURNING run.id
),
moved AS (
  UPDATE campaign c SET tokens_used = c.tokens_used - m.used,
         tokens_reserved = CASE WHEN c.campaign_budget IS NULL THEN 0 ELSE c.tokens_reserved + m.used END
  FROM (SELECT campaign_id, sum(tokens_used) AS used FROM r GROUP BY campaign_id) m
  WHERE c.id = m.campaign_id
)
SELECT id FROM reopened ORDER BY id;

-- name: campaign_progress
-- A campaign's status and how many of its runs have not ended (read after a statement that locked its row, so that it sees every run that ended before).
SELECT c.status,
       (SELECT count(*) FROM run WHERE campaign_id = c.id AND status IN ('pending', 'running')) AS unfinished
FROM campaign c WHERE c.id = :id;

-- name: finish_campaign
-- The campaign ends with :status (the decision of pacore.core.rounds.campaign_after_runs).
UPDATE campaign SET status = :status, finished_at = now() WHERE id = :id;
