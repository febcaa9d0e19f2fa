"""Admission control: never more in flight (published, unfinished) than about twice the live fleet's
generation slots; later rounds before new runs; new runs round-robin across campaigns."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import redis

from scheduler.app import priority_lists

SLOTS = 2  # one worker, concurrency 2: the bound is 2 x 2 = 4 trajectories in flight


def test_in_flight_work_stays_within_twice_the_fleet_and_campaigns_take_turns(
    fake_fleet, fake_engine, tmp_path: Path
) -> None:
    env = {"PACORE_ADMISSION_FACTOR": "2", "PACORE_ADMISSION_FLOOR": "1"}
    # No worker yet: the floor (1) admits no round of K=4, so both campaigns wait with all their runs
    # pending until the worker comes (a fast fleet could otherwise finish one before the other's submit).
    with fake_fleet(workers=0, extra_env=env) as fleet:
        for name in ("left", "right"):
            path = tmp_path / f"{name}.jsonl"
            path.write_text(
                "".join(
                    json.dumps({"id": f"{name}{i}", "problem": f"PACE5 problem {i}"}) + "\n" for i in range(3)
                )
            )
            fleet.submit(path, "--preset", "low")
        fleet.start("worker-0", "worker", "--engine-url", fleet.engine_url, "--concurrency", str(SLOTS))
        broker = redis.Redis.from_url(fleet.broker_url)
        seen = {"in_flight": 0, "queued": 0, "samples": 0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                in_flight = fleet.query(
                    "SELECT count(*) FROM trajectory WHERE status = 'running' "
                    "OR (status = 'pending' AND published_at IS NOT NULL)"
                )[0][0]
                seen["in_flight"] = max(seen["in_flight"], in_flight)
                queued = sum(broker.llen(key) for key in priority_lists(f"generate.{fake_engine.model}"))
                seen["queued"] = max(seen["queued"], queued)
                seen["samples"] += 1
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for name in ("left", "right"):
                assert fleet.wait_finished(name, timeout=180)["runs"] == {"total": 3, "done": 3}
        finally:
            stop.set()
            watcher.join()
        assert seen["samples"] > 20
        assert seen["in_flight"] <= 2 * SLOTS, seen
        assert seen["queued"] <= 2 * SLOTS, seen
        order = [
            c
            for (c,) in fleet.query(
                "SELECT c.name FROM run JOIN campaign c ON c.id = run.campaign_id ORDER BY run.started_at, run.id"
            )
        ]
        # Once both campaigns have pending runs, new runs alternate between them.
        since = order[order.index("right") :]
        both = 2 * min(since.count("left"), since.count("right"))
        assert both >= 2 and all(a != b for a, b in zip(since[: both - 1], since[1:both], strict=True)), (
            f"take turns: {order}"
        )
