"""Spot nodes: a worker killed with -9 mid-generation, and a broker that loses every queue, delay a
campaign but do not break it. Short leases and reconcile periods; real processes, Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.fleet import Fleet, running_fleet

FAST = {"PACORE_LEASE_SECONDS": "5", "PACORE_HEARTBEAT_SECONDS": "1", "PACORE_RECONCILE_INTERVAL": "1"}


@pytest.fixture
def spot_fleet(postgres_admin, template_db, redis_available, fake_engine, tmp_path) -> Iterator[Fleet]:
    with running_fleet(
        postgres_admin,
        template_db,
        redis_available,
        fake_engine.url,
        fake_engine.model,
        tmp_path,
        concurrency=4,
        extra_env=FAST,
    ) as fleet:
        yield fleet


def slow_campaign(fleet: Fleet, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"{name}{i}", "problem": f"SLOW1500 problem {i}"}) + "\n" for i in range(4))
    )
    fleet.submit(path, "--preset", "low")


def wait_until(fleet: Fleet, sql: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not fleet.query(sql)[0][0]:
        assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
        time.sleep(0.2)


def test_a_worker_killed_mid_generation_loses_nothing(spot_fleet: Fleet, tmp_path: Path) -> None:
    slow_campaign(spot_fleet, tmp_path, "kill")
    wait_until(spot_fleet, "SELECT count(*) >= 4 FROM trajectory WHERE status = 'running'")
    worker = spot_fleet.procs[1]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    held = spot_fleet.query("SELECT count(*) FROM trajectory WHERE status = 'running'")[0][0]
    spot_fleet.start(
        "worker-replacement", "worker", "--engine-url", spot_fleet.engine_url, "--concurrency", "4"
    )
    status = spot_fleet.wait_finished("kill", timeout=120)
    assert status["runs"] == {"total": 4, "done": 4}
    ledger = spot_fleet.query(
        "SELECT count(*) FILTER (WHERE outcome = 'preempted'), count(*) FILTER (WHERE outcome = 'done'), "
        "count(DISTINCT trajectory_id) FILTER (WHERE outcome = 'done') FROM attempt"
    )[0]
    assert ledger == (held, 20, 20), "every trajectory the dead worker held was re-driven; each settled once"
    spot_fleet.assert_within_budget(status)


def test_losing_every_queue_delays_the_campaign_but_does_not_break_it(
    spot_fleet: Fleet, tmp_path: Path
) -> None:
    slow_campaign(spot_fleet, tmp_path, "flush")
    wait_until(spot_fleet, "SELECT count(*) >= 2 FROM trajectory WHERE status = 'done'")
    redis.Redis.from_url(
        spot_fleet.broker_url
    ).flushdb()  # queues, unacked messages, chord counters: all gone
    status = spot_fleet.wait_finished("flush", timeout=120)
    assert status["runs"] == {"total": 4, "done": 4} and status["trajectories"] == {"total": 20, "done": 20}
    spot_fleet.assert_within_budget(status)
