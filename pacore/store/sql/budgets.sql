-- name: lock_running_trajectory
-- Lock a trajectory's row if this attempt still runs it (the first lock of every budget change: trajectory, run, campaign) and read what it holds.
SELECT tokens_reserved FROM trajectory WHERE id = :id AND attempt = :attempt AND status = 'running' FOR NO KEY UPDATE;

-- name: lock_run_tokens
-- Lock a run's row and read its token counters.
SELECT token_limit AS "limit", tokens_granted AS granted, tokens_used AS used, tokens_reserved AS reserved
FROM run WHERE id = :id FOR NO KEY UPDATE;

-- name: lock_campaign_tokens
-- Lock a campaign's row and read its token counters.
SELECT campaign_budget AS "limit", tokens_used AS used, tokens_reserved AS reserved
FROM campaign WHERE id = :id FOR NO KEY UPDATE;

-- name: campaign_tokens
-- Read a campaign's token counters without a lock (a round's plan only estimates: blocks enforce the budget).
SELECT campaign_budget AS "limit", tokens_used AS used, tokens_reserved AS reserved FROM campaign WHERE id = :id;

-- name: write_run_tokens
-- Write a run's token counters (its row is locked).
UPDATE run SET tokens_granted = :granted, tokens_used = :used, tokens_reserved = :reserved WHERE id = :id;

-- name: write_campaign_tokens
-- Write a campaign's token counters (its row is locked).
UPDATE campaign SET tokens_used = :used, tokens_reserved = :reserved WHERE id = :id;

-- name: add_trajectory_reservation
-- A running attempt holds another block; records what it had streamed when it asked.
UPDATE trajectory SET tokens_reserved = tokens_reserved + :n, tokens_streamed = :streamed WHERE id = :id;

-- name: add_run_waste_and_prompt
-- Count an attempt's wasted and prompt tokens on its run.
UPDATE run SET tokens_wasted = tokens_wasted + :wasted, prompt_tokens = prompt_tokens + :prompt WHERE id = :id;
