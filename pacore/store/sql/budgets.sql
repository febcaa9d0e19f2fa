-- name: reserve_block
-- A running attempt holding :held takes up to :want tokens (at least :minimum) from its run's free grant, in one statement over the trajectory, then the run; returns what it held before (null: it no longer runs the trajectory), what it took, and the run's counters (for a grant when it took nothing).
WITH mine AS (
  SELECT id, tokens_reserved FROM trajectory
  WHERE id = :id AND attempt = :attempt AND status = 'running' FOR NO KEY UPDATE
),
free AS (
  SELECT r.id, r.token_limit, r.tokens_granted, r.tokens_used, r.tokens_reserved,
         CASE WHEN mine.tokens_reserved = CAST(:held AS bigint)
              THEN least(CAST(:want AS bigint), r.tokens_granted - r.tokens_used - r.tokens_reserved)
              ELSE 0 END AS n
  FROM mine, run r WHERE r.id = :run
  FOR NO KEY UPDATE OF r
),
took AS (
  UPDATE run SET tokens_reserved = run.tokens_reserved + free.n FROM free
  WHERE run.id = free.id AND free.n >= greatest(CAST(:minimum AS bigint), 1)
  RETURNING free.n
),
held AS (
  UPDATE trajectory t SET tokens_reserved = t.tokens_reserved + took.n, tokens_streamed = :streamed
  FROM took WHERE t.id = :id
)
SELECT (SELECT tokens_reserved FROM mine) AS before, coalesce((SELECT n FROM took), 0) AS got,
       f.token_limit AS "limit", coalesce(f.tokens_granted, 0) AS granted, coalesce(f.tokens_used, 0) AS used,
       coalesce(f.tokens_reserved, 0) AS reserved
FROM (SELECT 1) AS one LEFT JOIN free f ON true;

-- name: reserve_first_blocks
-- Running attempts that have just been claimed take their first block (:wants each, at most) from their runs' free grants, in one statement over the trajectories, then their runs (rows locked in id order): in trajectory id order, each takes what its run's free grant has left after the ones before it, as one reserve_block each would. An attempt that holds a block already (a re-claim after a lost answer) takes none and returns the one it holds. Returns what each running attempt holds now (an attempt that no longer runs its trajectory is not returned).
WITH w AS (
  SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), CAST(:runs AS bigint[]),
                       CAST(:wants AS bigint[])) AS w(id, attempt, run_id, want)
),
mine AS (
  SELECT t.id, t.tokens_reserved AS before, w.run_id, w.want
  FROM trajectory t JOIN w ON w.id = t.id AND t.attempt = w.attempt
  WHERE t.status = 'running' ORDER BY t.id FOR NO KEY UPDATE OF t
),
free AS (
  SELECT r.id, r.tokens_granted - r.tokens_used - r.tokens_reserved AS n FROM run r
  WHERE r.id IN (SELECT run_id FROM mine) ORDER BY r.id FOR NO KEY UPDATE
),
got AS (
  SELECT a.id, a.run_id, greatest(0, least(a.want, a.free - a.asked_before)) AS n
  FROM (SELECT m.id, m.run_id, m.want, f.n AS free,
               sum(m.want) OVER (PARTITION BY m.run_id ORDER BY m.id) - m.want AS asked_before
        FROM mine m JOIN free f ON f.id = m.run_id WHERE m.before = 0) a
),
took AS (
  UPDATE run SET tokens_reserved = run.tokens_reserved + s.n
  FROM (SELECT run_id, sum(n) AS n FROM got GROUP BY run_id) s WHERE run.id = s.run_id AND s.n > 0
),
held AS (
  UPDATE trajectory t SET tokens_reserved = t.tokens_reserved + got.n, tokens_streamed = 0
  FROM got WHERE t.id = got.id AND got.n > 0
)
SELECT m.id AS trajectory_id, CASE WHEN m.before > 0 THEN m.before ELSE coalesce(g.n, 0) END AS reserved
FROM mine m LEFT JOIN got g ON g.id = m.id;

-- name: lock_live_run_tokens
-- Lock a run that has not ended and read its token counters, before a grant in a transaction of its own (the run's row, then the campaign's, as every grant locks them); no row: it has ended.
SELECT token_limit AS "limit", tokens_granted AS granted, tokens_used AS used, tokens_reserved AS reserved
FROM run WHERE id = :id AND status IN ('pending', 'running') FOR NO KEY UPDATE;

-- name: grant_to_run
-- A campaign grants a run up to :ask tokens, never more than an even share of what it has left among its runs still going (pending or running, this one included: pacore.core.budget.fair_ask), and at least :minimum, in one statement over the campaign and the run (whose row this transaction holds already); returns what it gave. A campaign without a budget gives :ask and its row is neither locked nor written (it keeps no reservation count: see set_campaign_budget); the run's lock, taken before this statement, keeps a budget from being set meanwhile.
WITH budget AS (SELECT campaign_budget IS NULL AS unlimited FROM campaign WHERE id = :campaign),
c AS (
  SELECT greatest(0, campaign_budget - tokens_used - tokens_reserved) AS available
  FROM campaign WHERE id = :campaign AND NOT (SELECT unlimited FROM budget) FOR NO KEY UPDATE
),
fair AS (
  SELECT c.available, least(CAST(:ask AS bigint), greatest(CAST(:minimum AS bigint), c.available / greatest(1,
           (SELECT count(*) FROM run WHERE campaign_id = :campaign AND status IN ('pending', 'running'))))) AS ask
  FROM c
),
g AS (
  SELECT CASE WHEN available >= ask THEN ask WHEN available >= CAST(:minimum AS bigint) THEN available ELSE 0 END
           AS n
  FROM fair
  UNION ALL
  SELECT CAST(:ask AS bigint) FROM budget WHERE unlimited
),
given AS (
  UPDATE campaign SET tokens_reserved = campaign.tokens_reserved + g.n FROM g
  WHERE campaign.id = :campaign AND g.n > 0 AND NOT (SELECT unlimited FROM budget)
),
granted AS (
  UPDATE run SET tokens_granted = run.tokens_granted + g.n FROM g WHERE run.id = :run AND g.n > 0
  RETURNING g.n
)
SELECT coalesce((SELECT n FROM granted), 0);

-- name: return_idle_grant
-- A run none of whose trajectories runs (the last one just went to wait for budget) gives its campaign back what it holds granted and not reserved, so that the runs still going can take it; it takes a grant again when one of its trajectories is published. Locks the run, then the campaign, as every grant does. Returns what it gave back.
WITH free AS (
  SELECT id, campaign_id, tokens_granted - tokens_used - tokens_reserved AS n FROM run
  WHERE id = :run AND tokens_granted > tokens_used + tokens_reserved
    AND NOT EXISTS (SELECT 1 FROM trajectory t JOIN round r ON r.id = t.round_id
                    WHERE r.run_id = :run AND t.status = 'running')
  FOR NO KEY UPDATE
),
taken AS (
  UPDATE run SET tokens_granted = run.tokens_granted - free.n FROM free WHERE run.id = free.id
  RETURNING free.n, free.campaign_id
),
back AS (
  UPDATE campaign SET tokens_reserved = CASE WHEN campaign.campaign_budget IS NULL THEN 0
                                             ELSE campaign.tokens_reserved - taken.n END
  FROM taken WHERE campaign.id = taken.campaign_id
  RETURNING taken.n
)
SELECT coalesce((SELECT n FROM back), 0);
