-- name: fleet_capacity
-- Generation slots of the live fleet: workers up whose heartbeat is fresh.
SELECT coalesce(sum(concurrency), 0) FROM worker
WHERE status = 'up' AND heartbeat_at > now() - make_interval(secs => :stale);

-- name: count_in_flight
-- Trajectories in flight: running, or pending with a message published.
SELECT count(*) FROM trajectory WHERE status = 'running' OR (status = 'pending' AND published_at IS NOT NULL);

-- name: mark_published
-- Stamp trajectories whose messages were just published (one that waited for budget waits no more). A row another transaction holds is left: a worker claiming it (its message came before the stamp; running, it is in flight unstamped), or a hand-back or cancel unstamping it; waiting for those would hold the scheduler behind a batch's claim.
WITH free AS (SELECT id FROM trajectory WHERE id = ANY(:ids) FOR NO KEY UPDATE SKIP LOCKED)
UPDATE trajectory t SET published_at = now(), waiting_since = NULL FROM free WHERE t.id = free.id;

-- name: unpublished_trajectories
-- Pending trajectories with no message (deferred by admission, handed back, or a publish lost after commit), latest rounds first; one waiting for budget only once its run and campaign have :block tokens for it again (pacore.core.budget.wake_tokens; the oldest runs first). A first attempt only :grace seconds after its row was made (its creator may be publishing it); a later one (handed back, failed and tried again) at once.
SELECT t.round_id AS round_id, c.config ->> 'model' AS model, t.id AS trajectory_id, t.attempt AS attempt
FROM trajectory t JOIN campaign c ON c.id = t.campaign_id JOIN round r ON r.id = t.round_id JOIN run ON run.id = r.run_id
WHERE t.status = 'pending' AND t.published_at IS NULL AND run.status = 'running'
  AND (t.attempt > 1 OR t.created_at < now() - make_interval(secs => :grace)) AND c.status = 'active'
  AND (t.waiting_since IS NULL
       OR ((run.token_limit IS NULL OR run.token_limit - run.tokens_used - run.tokens_reserved >= :block)
           AND (c.campaign_budget IS NULL
                OR c.campaign_budget - c.tokens_used - c.tokens_reserved
                   + run.tokens_granted - run.tokens_used - run.tokens_reserved >= :block)))
ORDER BY t.waiting_since IS NOT NULL, run.id, r.index DESC, t.round_id, t.index
LIMIT 10000;

-- name: starved_runs
-- Running runs whose unfinished trajectories all wait for budget (none running or pending otherwise), with what is left to them: `own` of their problem budget and `shared` of their campaign's (with their free grant; null: unlimited), and whether every other unfinished run of their campaign is starved too. Only run :run's row when it is given (the others still count for `all_starved`).
WITH waiting AS (  -- from the waiting trajectories (none, most ticks), not from every running run
  SELECT DISTINCT r.run_id FROM trajectory t JOIN round r ON r.id = t.round_id
  WHERE t.status = 'pending' AND t.waiting_since IS NOT NULL
),
s AS (
  SELECT run.id, run.campaign_id,
         run.token_limit - run.tokens_used - run.tokens_reserved AS own,
         c.campaign_budget - c.tokens_used - c.tokens_reserved
           + run.tokens_granted - run.tokens_used - run.tokens_reserved AS shared
  FROM waiting w JOIN run ON run.id = w.run_id JOIN campaign c ON c.id = run.campaign_id
  WHERE run.status = 'running' AND c.status = 'active'
    AND NOT EXISTS (SELECT 1 FROM trajectory t JOIN round r ON r.id = t.round_id
                    WHERE r.run_id = run.id
                      AND (t.status = 'running' OR (t.status = 'pending' AND t.waiting_since IS NULL)))
)
SELECT s.id AS run_id, s.campaign_id, s.own, s.shared,
       NOT EXISTS (SELECT 1 FROM run o WHERE o.campaign_id = s.campaign_id AND o.status IN ('pending', 'running')
                   AND o.id NOT IN (SELECT id FROM s)) AS all_starved
FROM s WHERE CAST(:run AS bigint) IS NULL OR s.id = :run ORDER BY s.id;

-- name: active_models
-- The models that active campaigns generate with (their queues are the ones to watch).
SELECT DISTINCT config ->> 'model' FROM campaign WHERE status = 'active';

-- name: published_at_or_now
-- When the trajectory of a queue's oldest message was published; now() for an empty queue.
SELECT coalesce((SELECT published_at FROM trajectory WHERE id = :head), CASE WHEN :empty THEN now() END);

-- name: stuck_rounds
-- Rounds still generating whose trajectories have all finished: their advance was lost (optionally of one campaign). A round that generated its own trajectories has a chord (of one batch: a task with a linked callback) whose callback advances it as the last one finishes: it counts as stuck once that was :grace seconds ago (a tick that raced every callback would win a third of the advances, each callback then waiting on its round's row). A round of trajectories drawn from a pool has no chord: the tick advances it at once.
SELECT r.id FROM round r JOIN run ON run.id = r.run_id
WHERE r.status = 'generating'
  AND NOT EXISTS (SELECT 1 FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id
                  WHERE rt.round_id = r.id AND t.status IN ('pending', 'running'))
  AND (CAST(:cid AS bigint) IS NULL OR run.campaign_id = :cid)
  AND (EXISTS (SELECT 1 FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id
               WHERE rt.round_id = r.id AND t.round_id <> r.id)
       OR NOT EXISTS (SELECT 1 FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id
                      WHERE rt.round_id = r.id AND t.finished_at > now() - make_interval(secs => :grace)));

-- name: reconcile_trajectories
-- Trajectories the reconciler may act on: running ones whose lease expired, pending ones whose message is gone (published before the horizon or the model's cutoff), or with :everything all running and pending.
SELECT t.id AS id, t.round_id AS round_id, t.status AS status, t.attempt AS attempt,
       coalesce(t.lease_until < now(), false) AS lease_expired,
       coalesce(t.published_at < now() - make_interval(secs => :horizon)
                OR t.published_at < (CAST(:cutoffs AS jsonb) ->> (c.config ->> 'model'))::timestamptz, false)
         AS publish_stale
FROM trajectory t JOIN round r ON r.id = t.round_id JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = t.campaign_id
WHERE ((t.status = 'running' AND (:everything OR t.lease_until < now()))
       OR (t.status = 'pending' AND c.status = 'active'
           AND (:everything OR t.published_at < now() - make_interval(secs => :horizon)
                OR t.published_at < (CAST(:cutoffs AS jsonb) ->> (c.config ->> 'model'))::timestamptz)))
  AND (CAST(:cid AS bigint) IS NULL OR run.campaign_id = :cid);

-- name: round_models
-- The model each round generates with.
SELECT r.id, c.config ->> 'model' FROM round r JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id
WHERE r.id = ANY(:ids);

-- name: wake_scheduler
-- Tell the schedulers, when this transaction commits, that it made work to start (pacore.store.notices).
SELECT pg_notify(:channel, '');
