-- name: register_worker
-- A worker process joins the fleet.
INSERT INTO worker (id, hostname, pid, queue, model, revision, engine_url, concurrency)
VALUES (:id, :host, :pid, :queue, :model, :revision, :url, :concurrency);

-- name: mark_worker_down
-- A worker process leaves the fleet.
UPDATE worker SET status = 'down' WHERE id = :id;

-- name: extend_leases
-- A heartbeat extends the leases of the trajectories a worker process is generating; returns those still its own. Their rows are locked in id order, as every statement that locks several trajectories takes them (a claim, a result write, a re-drive): in the order of the array, a heartbeat and a result write of the same rows could each wait for the other.
WITH mine AS (
  SELECT t.id FROM trajectory t
  JOIN unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS h(id, attempt) ON t.id = h.id
  WHERE t.attempt = h.attempt AND t.worker_id = :worker AND t.status = 'running'
  ORDER BY t.id FOR NO KEY UPDATE OF t
)
UPDATE trajectory t SET lease_until = now() + make_interval(secs => :lease)
FROM mine WHERE t.id = mine.id
RETURNING t.id;

-- name: touch_worker
-- A heartbeat keeps the worker's row fresh.
UPDATE worker SET heartbeat_at = now() WHERE id = :worker;

-- name: set_worker_engine
-- A worker's health gate saw its engine go (engine_down: it takes no work) or come back (up).
UPDATE worker SET status = :status WHERE id = :id AND status IN ('up', 'engine_down');

-- name: fleet_by_model
-- The live fleet per served model: workers with a fresh heartbeat, their generation slots, and those whose
-- engine is down (they take no work until it answers again).
SELECT model,
       count(*) FILTER (WHERE status = 'up') AS workers,
       coalesce(sum(concurrency) FILTER (WHERE status = 'up'), 0) AS slots,
       count(*) FILTER (WHERE status = 'engine_down') AS engines_down,
       array_remove(array_agg(DISTINCT revision ORDER BY revision), NULL) AS revisions
FROM worker
WHERE status IN ('up', 'engine_down') AND heartbeat_at > now() - make_interval(secs => :stale)
GROUP BY model ORDER BY model;

-- name: expired_leases
-- Per campaign: running trajectories whose lease ran out (their worker stopped beating: killed, frozen,
-- cut off), which the reconciler re-drives, and how long the oldest has waited.
SELECT campaign_id, count(*) AS trajectories, extract(epoch FROM now() - min(lease_until)) AS waited
FROM trajectory
WHERE campaign_id = ANY(:ids) AND status = 'running' AND lease_until < now()
GROUP BY campaign_id;

-- name: demand_by_model
-- The generation slots each model's queue needs now (the view fleet_demand, migration 0006: running, pending and not waiting for budget, and round 1 of runs not started, of active campaigns).
SELECT model, slots FROM fleet_demand ORDER BY model;

-- name: demand_of_model
-- One model's demand in slots; the KEDA ScaledObject's query is this text with the model's name in place of :model.
SELECT coalesce(sum(slots), 0) AS slots FROM fleet_demand WHERE model = :model;

-- name: running_by_pid
-- What each of one host's worker processes generates now, by pid (an autoscaler scales in the least busy first).
SELECT w.pid AS pid, count(t.id) AS running
FROM worker w LEFT JOIN trajectory t ON t.worker_id = w.id AND t.status = 'running'
WHERE w.hostname = :host AND w.pid = ANY(:pids) AND w.status IN ('up', 'engine_down')
GROUP BY w.pid;
