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
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

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


def private_fleet(stack: ExitStack, root: Path, engine_url: str, concurrency: int) -> Fleet:
    pg = PrivatePostgres(root)
    pg.start()
    stack.callback(pg.stop)
    broker = PrivateRedis(root)
    stack.callback(broker.stop)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    fleet = Fleet(root, pg.url.rsplit("/", 1)[0] + "/bench", broker.url, engine_url, concurrency)
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
            fleet.run(
                "submit",
                str(problems_file(root, args.problems)),
                "--name",
                "hop",
                "--model",
                MODEL,
                "--preset",
                "low",
            )
            deadline = time.monotonic() + 600
            while json.loads(fleet.run("status", "hop", "--json"))["status"] != "done":
                if time.monotonic() > deadline:
                    raise SystemExit("the campaign did not finish in 10 minutes")
                time.sleep(0.5)
            with psycopg.connect(fleet.env["PACORE_DATABASE_URL"]) as conn:
                rows = conn.execute(
                    "SELECT extract(epoch FROM max(t.finished_at)), r2.input_messages -> -1 ->> 'content' FROM round r1 "
                    "JOIN trajectory t ON t.round_id = r1.id JOIN round r2 ON r2.run_id = r1.run_id AND r2.index = 2 "
                    "WHERE r1.index = 1 GROUP BY r1.id, r2.id"
                ).fetchall()
            arrivals: dict[str, float] = {}
            for at, content in engine.arrivals:
                arrivals.setdefault(content, at)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    hops = [(arrivals[content] - float(finished)) * 1000 for finished, content in rows if content in arrivals]
    if len(hops) != len(rows):
        raise SystemExit(f"matched {len(hops)} of {len(rows)} round-2 requests")
    p50, p99 = quantile(hops, 0.5), quantile(hops, 0.99)
    print(f"{'hops':<22} {len(hops)}")
    print(f"{'p50 (ms)':<22} {p50:8.1f}   target <= 50")
    print(f"{'p99 (ms)':<22} {p99:8.1f}   target <= 500")
    print(f"{'mean / max (ms)':<22} {statistics.fmean(hops):8.1f} / {max(hops):.1f}")
    result = {
        "hops": len(hops),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(hops), 1),
        "p50_target_met": p50 <= 50,
        "p99_target_met": p99 <= 500,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
