-- name: register_worker
-- A worker process joins the fleet.
INSERT INTO worker (id, hostname, pid, queue, model, engine_url, concurrency)
VALUES (:id, :host, :pid, :queue, :model, :url, :concurrency);

-- name: mark_worker_down
-- A worker process leaves the fleet.
UPDATE worker SET status = 'down' WHERE id = :id;

-- name: extend_leases
-- A heartbeat extends the leases of the trajectories a worker process is generating; returns those still its own.
UPDATE trajectory t SET lease_until = now() + make_interval(secs => :lease)
FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS h(id, attempt)
WHERE t.id = h.id AND t.attempt = h.attempt AND t.worker_id = :worker AND t.status = 'running'
RETURNING t.id;

-- name: touch_worker
-- A heartbeat keeps the worker's row fresh.
UPDATE worker SET heartbeat_at = now() WHERE id = :worker;
