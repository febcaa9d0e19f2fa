"""Benchmark: trajectory completions per second that the control plane sustains (Celery + Redis +
PostgreSQL, every guarantee on: fenced claims and writes, exactly-once settlement through the ledger,
durable rows), with an engine that answers at once (instant_engine.py), on this machine.

    .venv/bin/python ops/bench/control_plane.py [--problems 1000] [--workers 2] [--concurrency 64]

Private PostgreSQL and Redis (see chaos.py), one `pacore scheduler`, `--workers` `pacore worker`s, a
preset-low campaign of MATH-500 problems (cycled: 5 trajectories per problem). The rate is completed
trajectories per second between 10% and 90% of the campaign (the steady state), read from the rows'
finished_at. Baseline, measured in the same run: the same number of single-row INSERT ... ; UPDATE
transactions a trajectory's rows need at least (claim, result), issued by one psycopg connection per
worker thread against the same PostgreSQL, no Celery, no engine: the database's own ceiling here.
Targets: >= 1,000/s; at least 330/s (a 1,000-GPU fleet at ~60k-token trajectories). Prints a table and
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import REPO  # noqa: E402
from instant_engine import MODEL, InstantEngine  # noqa: E402
from round_hop import private_fleet  # noqa: E402


def problems_file(root: Path, n: int) -> Path:
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
    lines = []
    for i in range(n):
        record = json.loads(source[i % len(source)])
        record["id"] = f"{record['id']}-{i}"
        lines.append(json.dumps(record))
    path = root / "problems.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def baseline(url: str, transactions: int, threads: int) -> float:
    """Two short transactions per trajectory (a claim-like UPDATE, a result-like UPDATE + INSERT)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_row (id bigint PRIMARY KEY, status text, body text)")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_ledger (id bigserial PRIMARY KEY, row_id bigint)")
        conn.execute("TRUNCATE bench_row, bench_ledger")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench_row VALUES (%s, 'pending', NULL)", [(i,) for i in range(transactions)]
            )
    per_thread = transactions // threads

    def work(offset: int) -> None:
        with psycopg.connect(url) as conn:
            for i in range(offset, offset + per_thread):
                with conn.transaction():
                    conn.execute(
                        "UPDATE bench_row SET status = 'running' WHERE id = %s AND status = 'pending'", (i,)
                    )
                with conn.transaction():
                    conn.execute(
                        "UPDATE bench_row SET status = 'done', body = 'x' WHERE id = %s AND status = 'running'",
                        (i,),
                    )
                    conn.execute("INSERT INTO bench_ledger (row_id) VALUES (%s)", (i,))

    began = time.perf_counter()
    pool = [threading.Thread(target=work, args=(t * per_thread,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return per_thread * threads / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pacore-cp-"))
    try:
        with ExitStack() as stack:
            engine = InstantEngine()
            stack.callback(engine.stop)
            fleet = private_fleet(stack, root, engine.url, args.concurrency)
            url = fleet.env["PACORE_DATABASE_URL"]
            ceiling = baseline(url, 20_000, 8)
            fleet.start_scheduler()
            for _ in range(args.workers):
                fleet.start_worker()
            time.sleep(3)  # workers register, so admission control sees the fleet
            began = time.monotonic()
            fleet.run(
                "submit",
                str(problems_file(root, args.problems)),
                "--name",
                "cp",
                "--model",
                MODEL,
                "--preset",
                "low",
            )
            while json.loads(fleet.run("status", "cp", "--json"))["status"] != "done":
                if time.monotonic() - began > 1800:
                    raise SystemExit("the campaign did not finish in 30 minutes")
                time.sleep(1)
            wall = time.monotonic() - began
            with psycopg.connect(url) as conn:
                times = [
                    float(t)
                    for (t,) in conn.execute(
                        "SELECT extract(epoch FROM finished_at) FROM trajectory ORDER BY finished_at"
                    ).fetchall()
                ]
                settled, used = conn.execute(
                    "SELECT (SELECT count(*) FROM attempt), (SELECT tokens_used FROM campaign)"
                ).fetchone()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = len(times)
    low, high = times[n // 10], times[(9 * n) // 10]
    steady = (int(0.9 * n) - int(0.1 * n)) / (high - low)
    print(f"{'trajectories':<40} {n:,}")
    print(f"{'steady completions/s (10%-90%)':<40} {steady:,.0f}   targets >= 1,000 (>= 330)")
    print(f"{'whole campaign completions/s':<40} {n / wall:,.0f}")
    print(f"{'baseline: 2 bare transactions/trajectory':<40} {ceiling:,.0f}/s")
    print(f"{'pacore / baseline':<40} {steady / ceiling:.3f}")
    print(f"{'ledger rows / trajectories':<40} {settled:,} / {n:,}")
    result = {
        "trajectories": n,
        "steady_per_s": round(steady, 1),
        "campaign_per_s": round(n / wall, 1),
        "baseline_per_s": round(ceiling, 1),
        "ratio": round(steady / ceiling, 4),
        "ledger_rows": settled,
        "tokens_used": used,
        "target_1000_met": steady >= 1000,
        "target_330_met": steady >= 330,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
