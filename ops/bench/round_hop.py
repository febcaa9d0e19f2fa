"""Benchmark: the round hop, from the last trajectory of a round finished (its row's finished_at) to the
first request of the next round arriving at the engine; p50 and p99 over runs. Targets: p50 <= 50 ms,
p99 <= 500 ms.

    .venv/bin/python ops/bench/round_hop.py [--problems 60]

Private PostgreSQL and Redis (see chaos.py), an engine that answers at once (instant_engine.py), one
`pacore scheduler` and one `pacore worker` with production defaults. Each MATH-500 problem is one run of
preset low: round 1 (K=4), then the final round, so each run makes one hop; all runs start together, so
hops also queue behind each other as they would in a busy fleet. Prints a table and `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import REPO, Fleet, PrivatePostgres, PrivateRedis  # noqa: E402
from instant_engine import MODEL, InstantEngine  # noqa: E402

# The chaos fleet's fast periods and small token blocks, back to production defaults.
DEFAULTS = (
    "PACORE_LEASE_SECONDS",
    "PACORE_HEARTBEAT_SECONDS",
    "PACORE_RECONCILE_INTERVAL",
    "PACORE_DISPATCH_INTERVAL",
    "PACORE_TOKEN_GRANT",
    "PACORE_TOKEN_BLOCK",
)


def private_fleet(stack: ExitStack, root: Path, engine_url: str, concurrency: int, cores: str = "") -> Fleet:
    """A private PostgreSQL, Redis and fleet with production defaults; `cores` pins the fleet (taskset
    list; empty: not pinned, as in the control-plane benchmarks, whose engine costs nothing)."""
    pg = PrivatePostgres(root)
    pg.start()
    stack.callback(pg.stop)
    broker = PrivateRedis(root)
    stack.callback(broker.stop)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    fleet = Fleet(root, pg.url.rsplit("/", 1)[0] + "/bench", broker.url, engine_url, concurrency, cores)
    for name in DEFAULTS:
        fleet.env.pop(name, None)
    stack.callback(fleet.stop)
    fleet.run("db", "upgrade")
    return fleet


def problems_file(root: Path, n: int) -> Path:
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
    path = root / "problems.jsonl"
    path.write_text("\n".join(source[:n]) + "\n")
    return path


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_done(fleet: Fleet, names: list[str]) -> None:
    deadline = time.monotonic() + 600
    for name in names:
        while json.loads(fleet.run("status", name, "--json"))["status"] != "done":
            if time.monotonic() > deadline:
                raise SystemExit("the campaigns did not finish in 10 minutes")
            time.sleep(0.3)


def measure(fleet: Fleet, engine: InstantEngine, names: list[str]) -> dict[str, Any]:
    """Hops of the runs of these campaigns: p50, p99 and where the time goes."""
    with psycopg.connect(fleet.env["PACORE_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM max(t.finished_at)), r2.input_messages -> -1 ->> 'content', "
            "extract(epoch FROM r2.created_at), (SELECT extract(epoch FROM t2.published_at) FROM trajectory t2 "
            "WHERE t2.round_id = r2.id LIMIT 1) FROM round r1 JOIN run ON run.id = r1.run_id "
            "JOIN campaign c ON c.id = run.campaign_id AND c.name = ANY(%s) "
            "JOIN trajectory t ON t.round_id = r1.id JOIN round r2 ON r2.run_id = r1.run_id AND r2.index = 2 "
            "WHERE r1.index = 1 GROUP BY r1.id, r2.id",
            (names,),
        ).fetchall()
    arrivals: dict[str, float] = {}
    for at, content in engine.arrivals:
        arrivals.setdefault(content, at)
    if any(content not in arrivals for _, content, _, _ in rows):
        raise SystemExit("a round-2 request never reached the engine")
    hops = [(arrivals[content] - float(finished)) * 1000 for finished, content, _, _ in rows]
    # Where the time goes: finished -> next round created (the callback), -> published, -> at the engine.
    # A trajectory a worker claimed before the scheduler stamped it keeps no publish time (the stamp
    # skips rows a claim holds): the two parts after the callback are over the stamped ones only.
    stamped = [row for row in rows if row[3] is not None]
    parts = {
        "advance (callback)": [(float(c) - float(f)) * 1000 for f, _, c, _ in rows],
        "publish": [(float(p) - float(c)) * 1000 for _, _, c, p in stamped] or [float("nan")],
        "delivery to the engine": [(arrivals[t] - float(p)) * 1000 for _, t, _, p in stamped]
        or [float("nan")],
    }
    return {
        "hops": len(hops),
        "claimed_before_stamped": len(rows) - len(stamped),
        "p50_ms": round(quantile(hops, 0.5), 1),
        "p99_ms": round(quantile(hops, 0.99), 1),
        "max_ms": round(max(hops), 1),
        "parts_p50_ms": {k: round(quantile(v, 0.5), 1) for k, v in parts.items()},
        "parts_p99_ms": {k: round(quantile(v, 0.99), 1) for k, v in parts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pacore-hop-"))
    try:
        with ExitStack() as stack:
            engine = InstantEngine()
            stack.callback(engine.stop)
            fleet = private_fleet(stack, root, engine.url, 64)
            fleet.start_scheduler()
            fleet.start_worker()
            source = problems_file(root, args.problems).read_text().splitlines()
            # At rest: one single-problem campaign at a time (the CLI's own start-up spaces them ~1 s).
            spaced = []
            for i, line in enumerate(source[: args.problems // 3]):
                path = root / f"one-{i}.jsonl"
                path.write_text(line + "\n")
                fleet.run("submit", str(path), "--name", f"rest-{i}", "--model", MODEL, "--preset", "low")
                spaced.append(f"rest-{i}")
            wait_done(fleet, spaced)
            at_rest = measure(fleet, engine, spaced)
            # A burst: every run's round 1 finishes at about the same time; hops queue behind each other.
            burst = root / "burst.jsonl"
            burst.write_text("\n".join(source[args.problems // 3 :]) + "\n")
            fleet.run("submit", str(burst), "--name", "burst", "--model", MODEL, "--preset", "low")
            wait_done(fleet, ["burst"])
            in_burst = measure(fleet, engine, ["burst"])
    finally:
        if not os.environ.get("PACORE_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'':<24} {'hops':>5} {'p50 ms':>8} {'p99 ms':>8}   callback / publish / delivery, p50 ms")
    for name, m in (("at rest", at_rest), ("burst", in_burst)):
        parts = " / ".join(f"{v:.0f}" for v in m["parts_p50_ms"].values())
        print(f"{name:<24} {m['hops']:>5} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f}   {parts}")
    print("targets: p50 <= 50 ms, p99 <= 500 ms")
    result = {
        "at_rest": at_rest,
        "burst": in_burst,
        "p50_target_met": at_rest["p50_ms"] <= 50,
        "p99_target_met": at_rest["p99_ms"] <= 500,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
