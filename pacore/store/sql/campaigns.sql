-- name: campaign_by_name
-- A campaign by its name.
SELECT id, name, status, config, created_at, campaign_budget, problem_budget
FROM campaign WHERE name = :name;

-- name: campaign_by_id
-- A campaign by its id.
SELECT id, name, status, config, created_at, campaign_budget, problem_budget
FROM campaign WHERE id = :id;

-- name: all_campaigns
-- Every campaign, oldest first.
SELECT id, name, status, config, created_at, campaign_budget, problem_budget
FROM campaign ORDER BY id;

-- name: recent_campaign_names
-- The names of the latest campaigns (for an error's hint).
SELECT name FROM campaign ORDER BY id DESC LIMIT :n;

-- name: insert_campaign
-- Create a campaign; nothing is returned when the name is taken.
INSERT INTO campaign (name, config, source, problem_budget, campaign_budget)
VALUES (:name, CAST(:config AS jsonb), :source, :problem_budget, :campaign_budget)
ON CONFLICT (name) DO NOTHING
RETURNING id;

-- name: insert_runs
-- Create :samples runs (samples 0..:last) of every problem of a campaign, each with the problem budget.
INSERT INTO run (campaign_id, problem_id, sample, token_limit)
SELECT :cid, p.id, s, :limit FROM problem p CROSS JOIN generate_series(0, :last) AS s
WHERE p.campaign_id = :cid ORDER BY p.id, s;

-- name: problem_counts
-- Problems per campaign.
SELECT campaign_id, count(*) FROM problem WHERE campaign_id = ANY(:ids) GROUP BY campaign_id;

-- name: run_status_counts
-- Runs per campaign and status: the campaign's own runs, or with :pools its round-1 pool runs (sample -1).
SELECT campaign_id, status, count(*) FROM run
WHERE campaign_id = ANY(:ids) AND (sample < 0) = :pools GROUP BY campaign_id, status;

-- name: trajectory_status_counts
-- Trajectories per campaign and status.
SELECT campaign_id, status, count(*) FROM trajectory WHERE campaign_id = ANY(:ids) GROUP BY campaign_id, status;

-- name: live_tokens
-- Per campaign: tokens used (settled, waste included), wasted, prompt, and reserved: granted to its runs that have not ended and not yet used.
SELECT campaign_id, sum(tokens_used) AS used, sum(tokens_wasted) AS wasted, sum(prompt_tokens) AS prompt,
       coalesce(sum(tokens_granted - tokens_used) FILTER (WHERE status IN ('pending', 'running', 'quarantined')), 0)
         AS reserved
FROM run WHERE campaign_id = ANY(:ids) GROUP BY campaign_id;

-- name: budget_decision_reasons
-- What the budget policy changed: rounds it shrank or skipped, and runs it ended, with their reasons.
SELECT run.campaign_id, r.plan_reason FROM round r JOIN run ON run.id = r.run_id
WHERE run.campaign_id = ANY(:ids) AND (r.plan_reason LIKE '%shrunk%' OR r.plan_reason LIKE '%skipped%')
UNION ALL
SELECT campaign_id, reason FROM run WHERE campaign_id = ANY(:ids) AND status = 'budget_exhausted';

-- name: find_problem
-- A campaign's problem by its id in the file.
SELECT id, ground_truth FROM problem WHERE campaign_id = :c AND external_id = :p;

-- name: first_problem_ids
-- A campaign's first problem ids (for an error's hint).
SELECT external_id FROM problem WHERE campaign_id = :c ORDER BY line LIMIT 5;

-- name: problem_trajectories
-- One problem's runs, their rounds and every trajectory, in order.
SELECT run.id AS run_id, run.sample AS sample, run.status AS status, run.reason AS reason, run.answer AS answer,
       run.tokens_used AS tokens, r.index AS round_index, r.k AS k, r.status AS round_status, r.plan_reason AS plan,
       t.index AS trajectory_index, t.status AS trajectory_status, t.attempt AS attempt,
       t.finish_reason AS finish_reason, t.completion_tokens AS completion_tokens, t.message AS message,
       t.error AS note
FROM run LEFT JOIN round r ON r.run_id = run.id
LEFT JOIN round_trajectory rt ON rt.round_id = r.id LEFT JOIN trajectory t ON t.id = rt.trajectory_id
WHERE run.problem_id = :p AND run.sample >= 0
ORDER BY run.sample, r.index, rt.position;

-- name: rounds_by_index_and_status
-- A campaign's rounds counted by index and status.
SELECT r.index, r.status, count(*) FROM round r JOIN run ON run.id = r.run_id
WHERE run.campaign_id = :c GROUP BY 1, 2 ORDER BY 1;

-- name: finished_run_cost
-- How many runs of a campaign finished (done, without a conclusion, or out of budget) and their mean tokens.
SELECT count(*) AS runs, coalesce(avg(tokens_used), 0) AS mean_tokens FROM run
WHERE campaign_id = :c AND status IN ('done', 'no_conclusion', 'budget_exhausted');

-- name: settled_tokens
-- Completion tokens of every settled attempt of a campaign.
SELECT coalesce(sum(a.completion_tokens), 0) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id
WHERE t.campaign_id = :c;

-- name: run_answers
-- A campaign's runs with their answers, the ground truth and tokens, problem by problem.
SELECT p.external_id AS problem_id, run.sample AS sample, run.status AS status, run.answer AS answer,
       p.ground_truth ->> 'answer' AS truth, run.tokens_used AS tokens
FROM run JOIN problem p ON p.id = run.problem_id
WHERE run.campaign_id = :cid ORDER BY p.id, run.sample;

-- name: set_campaign_status
-- Pause or resume a campaign.
UPDATE campaign SET status = :status WHERE id = :id;

-- name: unstamp_pending
-- Forget that a campaign's pending trajectories were published: the next dispatch tick publishes them again.
UPDATE trajectory SET published_at = NULL WHERE campaign_id = :id AND status = 'pending';

-- name: cancel_generating_rounds
-- Cancel a campaign's rounds that are generating (a round no longer generating cannot advance).
UPDATE round r SET status = 'cancelled', finished_at = now() FROM run
WHERE run.id = r.run_id AND run.campaign_id = :id AND r.status = 'generating';

-- name: cancel_campaign
-- The campaign is cancelled.
UPDATE campaign SET status = 'cancelled', finished_at = now() WHERE id = :id;

-- name: reopen_rounds
-- Rounds generate again (a retry).
UPDATE round SET status = 'generating', finished_at = NULL, decision = NULL WHERE id = ANY(:ids);

-- name: reopen_campaign
-- A done campaign is active again (a retry).
UPDATE campaign SET status = 'active', finished_at = NULL WHERE id = :id;

-- name: pool_users
-- Other campaigns whose rounds use this campaign's (round-1 pool) trajectories (with :unfinished, only pool trajectories still going).
SELECT DISTINCT c.name FROM trajectory t JOIN round_trajectory rt ON rt.trajectory_id = t.id
JOIN round r ON r.id = rt.round_id JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id
WHERE t.campaign_id = :id AND run.campaign_id <> :id AND (NOT :unfinished OR t.status IN ('pending', 'running'))
ORDER BY c.name;

-- name: count_running_trajectories
-- A campaign's trajectories generating now.
SELECT count(*) FROM trajectory WHERE campaign_id = :id AND status = 'running';

-- name: queued_trajectories
-- A campaign's pending trajectories that have a message out (published): what a broker may still hold of it.
SELECT id FROM trajectory WHERE campaign_id = :id AND status = 'pending' AND published_at IS NOT NULL;

-- name: count_runs
-- A campaign's runs (pool runs included).
SELECT count(*) FROM run WHERE campaign_id = :id;

-- name: delete_campaign
-- Delete a campaign and everything under it (cascades).
DELETE FROM campaign WHERE id = :id;

-- name: lock_unfinished_runs
-- Lock a campaign's unfinished runs (before its own row, in the order every grant takes them: runs, then the campaign).
SELECT id FROM run WHERE campaign_id = :id AND status IN ('pending', 'running', 'quarantined') ORDER BY id
FOR NO KEY UPDATE;

-- name: set_campaign_budget
-- Change a campaign's budget and take back what its unfinished runs hold granted and not reserved, so that a lowered budget binds every new reservation (blocks trajectories already hold may still be spent); runs take grants again as they need them. Its reservation count is computed afresh from its unfinished runs' grants (their rows locked by an earlier statement, so that none changes meanwhile): a campaign without a budget keeps none (0), since its grants do not touch its row. Returns the budget it had.
WITH free AS (
  SELECT id, tokens_granted - tokens_used - tokens_reserved AS n FROM run
  WHERE campaign_id = :id AND status IN ('pending', 'running', 'quarantined')
    AND tokens_granted > tokens_used + tokens_reserved
),
taken AS (
  UPDATE run SET tokens_granted = run.tokens_granted - free.n FROM free WHERE run.id = free.id RETURNING free.n
),
old AS (SELECT campaign_budget FROM campaign WHERE id = :id)
UPDATE campaign SET campaign_budget = :b,
       tokens_reserved = CASE WHEN CAST(:b AS bigint) IS NULL THEN 0 ELSE
         (SELECT coalesce(sum(tokens_granted), 0) FROM run
          WHERE campaign_id = :id AND status IN ('pending', 'running', 'quarantined'))
         - (SELECT coalesce(sum(n), 0) FROM taken) END
WHERE id = :id
RETURNING (SELECT campaign_budget FROM old);

-- name: runs_last_rounds
-- A campaign's runs that ended with :status (failed, or out of budget), and their last rounds (null: they never started one).
SELECT run.id AS run_id,
       (SELECT r.id FROM round r WHERE r.run_id = run.id ORDER BY r.index DESC LIMIT 1) AS round_id
FROM run WHERE run.campaign_id = :id AND run.status = :status ORDER BY run.id;

-- name: lift_quarantine
-- Quarantined runs of a campaign go back to work; only engine deaths after now count toward a new quarantine. Returns each run and its quarantine reason.
UPDATE run SET status = 'running', quarantine_lifted_at = now(), reason = NULL
FROM (SELECT id, reason FROM run WHERE campaign_id = :cid AND status = 'quarantined' FOR NO KEY UPDATE) old
WHERE run.id = old.id
RETURNING run.id, old.reason;

-- name: unstamp_pending_of_runs
-- Forget that these runs' pending trajectories were published: the next dispatch tick publishes them again.
UPDATE trajectory t SET published_at = NULL FROM round r
WHERE r.id = t.round_id AND r.run_id = ANY(:runs) AND t.status = 'pending';

-- name: copy_problems
-- Stream problems into a campaign (COPY, inside the transaction); messages as json (key order kept), the other documents as jsonb.
COPY problem (campaign_id, external_id, messages, ground_truth, category, extra, line) FROM STDIN;
