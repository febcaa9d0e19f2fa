"""Spot nodes: a worker killed with -9 mid-generation, a worker drained with SIGTERM, an engine that
dies, and a broker that loses every queue delay a campaign but do not break it; what was generated
before is continued from its checkpoint, not generated again. Short leases and reconcile periods; real
processes, Redis and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from scheduler.app import priority_lists
from tests.fake_engine import FakeEngine
from tests.fleet import Fleet, running_fleet, wait_until

GRACE = 4
FAST = {
    "PACORE_LEASE_SECONDS": "5",
    "PACORE_HEARTBEAT_SECONDS": "1",
    "PACORE_RECONCILE_INTERVAL": "1",
    "PACORE_DRAIN_GRACE_SECONDS": str(GRACE),
    "PACORE_ENGINE_HEALTH_SECONDS": "0.5",
    "PACORE_DB_IDLE_IN_TRANSACTION_SECONDS": "2",
}


@pytest.fixture
def spot_fleet(fake_fleet) -> Iterator[Fleet]:
    with fake_fleet(concurrency=4, extra_env=FAST) as fleet:
        yield fleet


def slow_campaign(fleet: Fleet, tmp_path: Path, name: str, text: str = "SLOW1500", problems: int = 4) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"{name}{i}", "problem": f"{text} problem {i}"}) + "\n" for i in range(problems)
        )
    )
    fleet.submit(path, "--preset", "low")


def assert_counted_once(fleet: Fleet, status: dict, script_tokens: int) -> None:
    """Every trajectory holds its whole script, each token once, however often it was interrupted; the
    ledger's spending is what was kept plus what it calls waste."""
    stored = fleet.query(
        "SELECT completion_tokens, reasoning FROM trajectory WHERE campaign_id = %s", status["id"]
    )
    assert {tokens for tokens, _ in stored} == {script_tokens}
    assert all(reasoning.split().count("w") == script_tokens - 6 for _, reasoning in stored)
    spent, wasted = fleet.query(
        "SELECT sum(a.completion_tokens), sum(a.wasted_tokens) FROM attempt a JOIN trajectory t "
        "ON t.id = a.trajectory_id WHERE t.campaign_id = %s",
        status["id"],
    )[0]
    assert spent == len(stored) * script_tokens + wasted
    fleet.assert_within_budget(status)


def test_a_worker_killed_mid_generation_loses_nothing(spot_fleet: Fleet, tmp_path: Path) -> None:
    slow_campaign(spot_fleet, tmp_path, "kill", "PACE60 LONG40")
    spot_fleet.until("SELECT count(*) >= 4 FROM trajectory WHERE status = 'running'")
    spot_fleet.until("SELECT count(DISTINCT trajectory_id) >= 4 FROM chunk")  # a heartbeat wrote them
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
    continued = spot_fleet.query(
        "SELECT count(*) FROM trajectory WHERE error LIKE 'continued a checkpoint of %%'"
    )[0][0]
    assert continued >= 4, "the re-driven attempts continued the checkpoints"
    assert_counted_once(spot_fleet, status, 45)
    assert spot_fleet.query("SELECT count(*) FROM chunk")[0][0] == 0, "a finished trajectory keeps no chunks"


def test_a_worker_frozen_inside_a_transaction_does_not_hold_the_reconciler(
    spot_fleet: Fleet, tmp_path: Path
) -> None:
    """A worker frozen (SIGSTOP, as a paused VM) or cut off inside a transaction keeps that transaction's
    row locks, and the reconciler must lock those rows to re-drive what the worker held. PostgreSQL ends
    such a session after PACORE_DB_IDLE_IN_TRANSACTION_SECONDS: what the worker held is re-driven while
    it is still stopped. To freeze it inside a transaction for certain, a row its heartbeat extends is
    locked here until the heartbeat waits for it; the worker is stopped, the lock let go: its heartbeat's
    update completes and its session waits, in the transaction, for a client that does not answer."""
    slow_campaign(spot_fleet, tmp_path, "frozen", "PACE60 LONG100")
    worker = spot_fleet.procs[1]
    sessions = f"pacore-worker:{worker.pid}"
    spot_fleet.until(
        "SELECT count(*) >= 4 FROM trajectory t JOIN worker w ON w.id = t.worker_id "
        "WHERE w.pid = %s AND t.status = 'running'",
        worker.pid,
    )
    held = spot_fleet.query(
        "SELECT t.id FROM trajectory t JOIN worker w ON w.id = t.worker_id WHERE w.pid = %s "
        "AND t.status = 'running' ORDER BY t.id",
        worker.pid,
    )
    with psycopg.connect(spot_fleet.database_url) as lock:
        lock.execute("SELECT 1 FROM trajectory WHERE id = %s FOR NO KEY UPDATE", [held[0][0]])
        spot_fleet.until(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock' AND query LIKE '%%SET lease_until%%'",
            sessions,
            timeout=30,
        )
        worker.send_signal(signal.SIGSTOP)
    try:  # the lock let go: the heartbeat's update completes; its commit never comes
        spot_fleet.until(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle in transaction' AND backend_xid IS NOT NULL",
            sessions,
        )
        spot_fleet.until(
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle in transaction'",
            sessions,
            timeout=30,
        )
        spot_fleet.until(
            "SELECT count(DISTINCT trajectory_id) = %s FROM attempt WHERE outcome = 'preempted' "
            "AND trajectory_id = ANY(%s)",
            len(held),
            [t for (t,) in held],
            timeout=30,
        )
    finally:
        worker.send_signal(signal.SIGCONT)
    status = spot_fleet.wait_finished("frozen", timeout=120)
    assert status["runs"] == {"total": 4, "done": 4}
    assert_counted_once(spot_fleet, status, 105)


def test_a_drained_worker_exits_within_its_grace_and_its_work_is_continued_elsewhere(
    spot_fleet: Fleet, tmp_path: Path
) -> None:
    slow_campaign(spot_fleet, tmp_path, "drain", "PACE60 LONG100", problems=2)
    spot_fleet.until("SELECT count(*) >= 4 FROM trajectory WHERE status = 'running'")
    spot_fleet.until("SELECT count(DISTINCT trajectory_id) >= 4 FROM chunk")  # a heartbeat wrote them
    worker = spot_fleet.procs[1]
    worker.send_signal(signal.SIGTERM)
    # it exits 0 (how fast, against its grace, is measured by ops/bench/chaos.py)
    assert worker.wait(timeout=30) == 0
    returned = spot_fleet.query(
        "SELECT count(*), sum(completion_tokens), sum(wasted_tokens) FROM attempt WHERE outcome = 'returned'"
    )[0]
    # handed back with all it streamed checkpointed; waste is only what the closed requests may have
    # generated unseen, as each attempt's note says
    assert returned[0] >= 4 and returned[1] > 0 and returned[2] == charged_unseen(spot_fleet, "returned")
    assert spot_fleet.query("SELECT count(*) FROM trajectory WHERE status = 'running'")[0][0] == 0
    spot_fleet.start(
        "worker-replacement", "worker", "--engine-url", spot_fleet.engine_url, "--concurrency", "4"
    )
    status = spot_fleet.wait_finished("drain", timeout=120)
    assert status["runs"] == {"total": 2, "done": 2}
    assert_counted_once(spot_fleet, status, 105)
    assert spot_fleet.query("SELECT sum(wasted_tokens) FROM attempt")[0][0] == charged_unseen(
        spot_fleet, "returned"
    )


@pytest.mark.parametrize("marker", ["SILENT", "STALL"])
def test_a_drain_cuts_streams_that_send_nothing(
    fake_fleet, fake_engine: FakeEngine, tmp_path: Path, marker: str
) -> None:
    """A hung engine (headers then silence, or not even headers) never reaches the per-line guard: the
    worker's watchdog cuts those reads, so a drained worker hands them back and exits 0 long before the
    client's own read timeout (here 120 s) or the engine (60 s) would end them; the engine sees its
    requests go."""
    # a message per trajectory: a batch would send its first request alone until its first token
    env = {**FAST, "PACORE_ENGINE_TIMEOUT": "120", "PACORE_BATCH_SIZE": "1"}
    with fake_fleet(concurrency=4, extra_env=env) as spot_fleet:
        hung_and_drained(spot_fleet, fake_engine, tmp_path, marker)


def hung_and_drained(spot_fleet: Fleet, fake_engine: FakeEngine, tmp_path: Path, marker: str) -> None:
    slow_campaign(spot_fleet, tmp_path, f"hung{marker.lower()}", f"{marker} a problem", problems=1)
    spot_fleet.until("SELECT count(*) >= 4 FROM trajectory WHERE status = 'running'")
    wait_until(lambda: fake_engine.streaming >= 4, "the engine holds the hung requests")
    worker = spot_fleet.procs[1]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, "the drained worker exited on its own, within its grace"
    wait_until(lambda: fake_engine.streaming == 0, "the engine to see the cut requests go")
    returned = spot_fleet.query(
        "SELECT count(*), coalesce(sum(wasted_tokens), 0) FROM attempt WHERE outcome = 'returned'"
    )[0]
    # each handed back; nothing arrived, so its waste is what its request may have generated unseen
    assert returned == (4, charged_unseen(spot_fleet, "returned")) and returned[1] > 0
    assert spot_fleet.query("SELECT count(*) FROM trajectory WHERE status = 'running'")[0][0] == 0
    log = (tmp_path / "worker-0.log").read_text()
    assert log.count("handed back (drained)") == 4


def test_losing_every_queue_delays_the_campaign_but_does_not_break_it(
    spot_fleet: Fleet, tmp_path: Path
) -> None:
    slow_campaign(spot_fleet, tmp_path, "flush")
    spot_fleet.until("SELECT count(*) >= 2 FROM trajectory WHERE status = 'done'")
    redis.Redis.from_url(
        spot_fleet.broker_url
    ).flushdb()  # queues, unacked messages, chord counters: all gone
    status = spot_fleet.wait_finished("flush", timeout=120)
    assert status["runs"] == {"total": 4, "done": 4} and status["trajectories"] == {"total": 20, "done": 20}
    spot_fleet.assert_within_budget(status)


@pytest.fixture
def private_engine() -> Iterator[FakeEngine]:
    with FakeEngine() as engine:
        yield engine


def test_a_dead_engine_stops_its_worker_without_failing_anything(
    postgres_admin, template_db, redis_available, private_engine: FakeEngine, tmp_path: Path
) -> None:
    with running_fleet(
        postgres_admin,
        template_db,
        redis_available,
        private_engine.url,
        private_engine.model,
        tmp_path,
        concurrency=4,
        extra_env=FAST,
    ) as fleet:
        slow_campaign(fleet, tmp_path, "dies", "PACE60 LONG40", problems=2)
        fleet.until("SELECT count(DISTINCT trajectory_id) >= 4 FROM chunk")
        private_engine.go_down(4)

        def engine_down_shown() -> bool:
            return json.loads(fleet.pacore("status", "dies", "--json").stdout)["fleet"]["engines_down"] == 1

        wait_until(engine_down_shown, "status to show the worker's engine down", 10)
        fleet.until("SELECT count(*) >= 4 FROM attempt WHERE outcome IN ('engine_lost', 'returned')")
        status = fleet.wait_finished("dies", timeout=120)
        assert status["fleet"] == {"live_workers": 1, "slots": 4, "engines_down": 0}, "its engine is back"
        assert status["runs"] == {"total": 2, "done": 2}
        assert fleet.query("SELECT count(*) FROM attempt WHERE outcome = 'failed'")[0][0] == 0
        assert_counted_once(fleet, status, 45)
        log = (tmp_path / "worker-0.log").read_text()
        assert "the engine stopped answering" in log and "the engine is back" in log


def test_a_request_that_kills_engines_on_two_workers_quarantines_its_run(
    postgres_admin, template_db, redis_available, tmp_path: Path
) -> None:
    with (
        FakeEngine() as first,
        FakeEngine() as second,
        running_fleet(
            postgres_admin,
            template_db,
            redis_available,
            first.url,
            first.model,
            tmp_path,
            concurrency=4,
            extra_env=FAST,
        ) as fleet,
    ):
        fleet.start("worker-second", "worker", "--engine-url", second.url, "--concurrency", "4")
        path = tmp_path / "poison.jsonl"
        path.write_text(
            json.dumps({"id": "poison", "problem": "CRASH a request that takes engines down"}) + "\n"
        )
        fleet.submit(path, "--preset", "low")
        fleet.until("SELECT count(*) = 1 FROM run WHERE status = 'quarantined'", timeout=90)
        reason = fleet.query("SELECT reason FROM run WHERE status = 'quarantined'")[0][0]
        assert "coincided with engine deaths on 2 workers" in reason
        # each death's attempt keeps the engine's words of its failed request (mostly the connection
        # broken mid-answer; the kind depends on where the stream was when the engine went), not just
        # "handed back"; any that does not is shown whole
        lost = [e for (e,) in fleet.query("SELECT error FROM attempt WHERE outcome = 'engine_lost'")]
        said = r"; try \d+ failed, the engine then did not answer /health: \w+: \S"
        assert len(lost) >= 2, lost
        assert [e for e in lost if not re.search(said, e)] == []
        status = json.loads(fleet.pacore("status", "poison", "--json").stdout)
        assert status["runs"] == {"total": 1, "quarantined": 1} and status["status"] == "active"

        slow_campaign(fleet, tmp_path, "fine", "PACE10", problems=3)  # the fleet goes on working
        assert fleet.wait_finished("fine", timeout=90)["runs"] == {"total": 3, "done": 3}
        assert fleet.query("SELECT status FROM run WHERE campaign_id = %s", status["id"]) == [
            ("quarantined",)
        ]
        assert fleet.query("SELECT count(*) FROM attempt WHERE outcome = 'failed'")[0][0] == 0

        first.crashes = second.crashes = False  # the operator fixed what crashed the engines
        lifted = fleet.pacore("quarantine", "lift", "poison")
        assert lifted.returncode == 0 and "1 quarantined run(s) back to work" in lifted.stdout
        status = fleet.wait_finished("poison", timeout=120)
        assert status["runs"] == {"total": 1, "done": 1}
        fleet.assert_within_budget(status)


def test_a_message_fetched_by_a_worker_that_died_before_claiming_it_is_published_again(
    fake_fleet, fake_engine, tmp_path: Path
) -> None:
    with fake_fleet(workers=0, extra_env=FAST) as fleet:
        broker = redis.Redis.from_url(fleet.broker_url)
        deadline = time.monotonic() + 30
        while not broker.exists("pacore:epoch"):  # the reconciler's first pass (which republishes all)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        slow_campaign(fleet, tmp_path, "fetched", "an ordinary problem", problems=2)
        # the runs' first rounds: in the lowest priority's list, where new runs' first rounds go (scheduler/publish.py)
        queue = priority_lists(f"generate.{fake_engine.model}")[-1]
        while broker.llen(queue) < 2:  # a message per round: a batch of its 4 trajectories
            assert time.monotonic() < deadline + 30
            time.sleep(0.1)
        taken = broker.rpop(queue)  # fetched by a consumer that then died: no ack, no claim
        assert taken is not None
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(taken)["body"]))
        lost = [tid for tid, _attempt in args[0]]  # generate_batch([[trajectory_id, attempt], ...])
        assert len(lost) == 4
        published = dict(fleet.query("SELECT id, published_at FROM trajectory WHERE id = ANY(%s)", lost))
        fleet.start("worker-late", "worker", "--engine-url", fleet.engine_url, "--concurrency", "8")
        status = fleet.wait_finished("fetched", timeout=60)
        assert status["runs"] == {"total": 2, "done": 2}
        again = fleet.query(
            "SELECT id, published_at, attempt FROM trajectory WHERE id = ANY(%s) AND status = 'done'", lost
        )
        # Their only message was taken and no attempt was re-driven (still attempt 1), yet they were
        # done: the reconciler published them again. Its publish stamp moves published_at on unless the
        # late worker already held the row (the stamp skips rows a claim holds), so it never goes back.
        assert len(again) == 4 and all(at >= published[tid] and attempt == 1 for tid, at, attempt in again), (
            "the reconciler published the lost message's trajectories again (same attempts) and they were done"
        )


def charged_unseen(fleet: Fleet, outcome: str) -> int:
    """What the attempts of this outcome say they charged for requests they closed mid-stream."""
    notes = fleet.query("SELECT error FROM attempt WHERE outcome = %s AND error IS NOT NULL", outcome)
    return sum(int(n) for (note,) in notes for n in re.findall(r"charged (\d+) unseen tokens", note))
