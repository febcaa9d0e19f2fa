-- name: campaign_pass_truncated
-- Whether a campaign passes on the reasoning of empty contents (--pass-truncated).
SELECT coalesce((config ->> 'pass_truncated')::boolean, false) FROM campaign WHERE id = :id;

-- name: export_runs
-- A batch of a campaign's runs (pool runs aside) after run id :last, with their problem.
SELECT run.id AS run_id, run.sample AS sample, run.status AS status, run.reason AS reason, run.answer AS answer,
       run.final_message AS final_message, run.tokens_used AS used, run.prompt_tokens AS prompt,
       p.external_id AS external_id, p.ground_truth AS ground_truth
FROM run JOIN problem p ON p.id = run.problem_id
WHERE run.campaign_id = :cid AND run.sample >= 0 AND run.id > :last
ORDER BY run.id
LIMIT :n;

-- name: export_trajectories
-- Every round of these runs with every trajectory it uses, in round and position order.
SELECT r.run_id AS run_id, r.index AS round_index, r.is_final AS is_final, r.input_messages AS input_messages,
       r.response_order AS response_order, r.finish_order AS finish_order, r.status AS round_status,
       rt.position AS position, t.content AS content, t.reasoning AS reasoning, t.status AS status,
       t.finish_reason AS finish_reason, t.completion_tokens AS completion_tokens, t.prompt_tokens AS prompt_tokens,
       t.error AS error, t.attempt AS attempt,
       (SELECT count(*) FROM attempt a WHERE a.trajectory_id = t.id) AS attempts_settled,
       CASE WHEN t.round_id <> r.id THEN t.id END AS pool_trajectory
FROM round r JOIN round_trajectory rt ON rt.round_id = r.id JOIN trajectory t ON t.id = rt.trajectory_id
WHERE r.run_id = ANY(:ids)
ORDER BY r.run_id, r.index, rt.position;

-- name: report_runs
-- A campaign's runs (pool runs aside) with their final conclusion, the tokens of every trajectory their rounds use, and the ground truth.
SELECT run.id AS run_id, p.external_id AS problem_id, run.status AS status, run.final_message AS final_message,
       (SELECT coalesce(sum(t.completion_tokens), 0) FROM round r JOIN round_trajectory rt ON rt.round_id = r.id
        JOIN trajectory t ON t.id = rt.trajectory_id WHERE r.run_id = run.id) AS ttc,
       p.ground_truth ->> 'answer' AS truth
FROM run JOIN problem p ON p.id = run.problem_id
WHERE run.campaign_id = :id AND run.sample >= 0
ORDER BY run.id;

-- name: round_one_tokens
-- Per run of a campaign: the completion tokens of its round 1.
SELECT r.run_id, coalesce(sum(t.completion_tokens), 0) FROM round r JOIN run ON run.id = r.run_id
JOIN round_trajectory rt ON rt.round_id = r.id JOIN trajectory t ON t.id = rt.trajectory_id
WHERE run.campaign_id = :id AND run.sample >= 0 AND r.index = 1
GROUP BY r.run_id;

-- name: round_references
-- Per run and round of a campaign: the reference each trajectory gave (null: none), in position order.
SELECT r.run_id, r.index, t.message FROM round r JOIN run ON run.id = r.run_id
JOIN round_trajectory rt ON rt.round_id = r.id JOIN trajectory t ON t.id = rt.trajectory_id
WHERE run.campaign_id = :id AND run.sample >= 0
ORDER BY r.run_id, r.index, rt.position;

-- name: archive_state
-- Where a campaign was archived and when its text was purged.
SELECT archived_to, text_purged_at FROM campaign WHERE id = :id;

-- name: set_archived_to
-- Remember where a campaign was archived.
UPDATE campaign SET archived_to = :path WHERE id = :id;

-- name: purge_trajectory_text
-- Delete a campaign's generated text (statuses, answers and token counts stay); returns how many trajectories held some.
UPDATE trajectory SET content = NULL, reasoning = NULL, message = NULL
WHERE campaign_id = :id AND (content IS NOT NULL OR reasoning IS NOT NULL);

-- name: purge_chunks
-- Delete a campaign's checkpoint chunks.
DELETE FROM chunk c USING trajectory t WHERE t.id = c.trajectory_id AND t.campaign_id = :id;

-- name: purge_round_inputs
-- Delete a campaign's round inputs.
UPDATE round r SET input_messages = '[]'::json FROM run WHERE run.id = r.run_id AND run.campaign_id = :id;

-- name: mark_text_purged
-- Remember that a campaign's text was purged.
UPDATE campaign SET text_purged_at = now() WHERE id = :id;

-- name: gauge_trajectories
-- For the metrics: trajectories of active and paused campaigns by status, and how many finished without a reference.
SELECT c.name, t.status, count(*), count(*) FILTER (WHERE t.status = 'done' AND t.message IS NULL)
FROM campaign c JOIN trajectory t ON t.campaign_id = c.id
WHERE c.status IN ('active', 'paused')
GROUP BY c.name, t.status;

-- name: gauge_tokens
-- For the metrics: tokens used, reserved and wasted by the runs of active and paused campaigns.
SELECT c.name, coalesce(sum(run.tokens_used), 0), coalesce(sum(run.tokens_reserved), 0),
       coalesce(sum(run.tokens_wasted), 0)
FROM campaign c JOIN run ON run.campaign_id = c.id
WHERE c.status IN ('active', 'paused')
GROUP BY c.name;
