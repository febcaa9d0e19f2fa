"""Prometheus metrics from a real scheduler and worker: what they count agrees with the database."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.M):
        values[name] = float(value)
    return values


def test_worker_and_scheduler_metrics_agree_with_the_rows(fake_fleet, fake_engine, tmp_path: Path) -> None:
    scheduler_port, worker_port = free_port(), free_port()
    env = {"PACORE_METRICS_PORT": str(scheduler_port), "PACORE_RECONCILE_INTERVAL": "1"}
    with fake_fleet(workers=0, extra_env=env) as fleet:
        fleet.start(
            "worker-metrics",
            "worker",
            "--engine-url",
            fake_engine.url,
            "--concurrency",
            "4",
            env={"PACORE_METRICS_PORT": str(worker_port)},
        )
        path = tmp_path / "measured.jsonl"
        path.write_text(
            "".join(json.dumps({"id": f"m{i}", "problem": f"DROP problem {i}"}) + "\n" for i in range(3))
        )
        fleet.submit(path, "--preset", "low")
        fleet.wait_finished("measured")
        stored = fleet.query("SELECT sum(completion_tokens), count(*) FROM trajectory")[0]
        deadline = time.monotonic() + 30
        while scrape(worker_port).get('pacore_attempts_total{outcome="done"}') != stored[1]:
            assert time.monotonic() < deadline, "the worker's counters never reached the stored rows"
            time.sleep(0.1)
        worker = scrape(worker_port)
        scheduler = scrape(scheduler_port)
        listening = [listening_on(worker_port), listening_on(scheduler_port)]
    assert worker["pacore_generated_tokens_total"] == stored[0]
    assert worker['pacore_attempts_total{outcome="done"}'] == stored[1]
    assert worker['pacore_engine_errors_total{kind="stream"}'] >= 1, "the cut streams were counted"
    assert worker["pacore_active_generations"] == 0
    assert scheduler["pacore_round_hop_seconds_count"] == 3, "one hop per run, round 1 to round 2"
    assert scheduler['pacore_admission{kind="capacity"}'] == 4
    assert listening == [["127.0.0.1"], ["127.0.0.1"]], "this host only"


def listening_on(port: int) -> list[str]:
    """The addresses a TCP socket listens on `port`, as the kernel lists them (/proc/net/tcp, tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(
                    socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
                    if len(address) == 8
                    else address
                )
    return found


def test_the_campaign_gauges_follow_the_rows(database, tmp_path: Path) -> None:
    """The scheduler refreshes them in its reconcile pass, from a query whose two columns are both
    named `count` (the store's rows take a name twice: psycopg's own named tuples refuse it)."""
    from pacore import metrics
    from tests.integration.test_fencing import result, started_round
    from worker import claims

    publish = started_round(database, tmp_path)  # a campaign "fencing" of K=4
    (tid, attempt), *_ = publish.trajectories
    assert claims.finish(database, claims.claim(database, tid, attempt, "w", 60), "w", result(3), None)
    with database.store() as store:
        metrics.refresh_campaign_gauges(store)
    gauge = metrics.TRAJECTORIES.labels("fencing", "done")._value.get()  # type: ignore[attr-defined]
    pending = metrics.TRAJECTORIES.labels("fencing", "pending")._value.get()  # type: ignore[attr-defined]
    assert (gauge, pending) == (1, 3)
