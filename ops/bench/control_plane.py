"""Benchmark: trajectory completions per second that the control plane sustains (Celery + Redis +
PostgreSQL, every guarantee on: fenced claims and writes, exactly-once settlement through the ledger,
durable rows), with an engine that answers at once (instant_engine.py), on this machine.

    .venv/bin/python ops/bench/control_plane.py [--medium 300] [--low 600] [--repeats 3]

Private PostgreSQL and Redis (see chaos.py); the instant engine is a process of its own on core 0; one
`pacore scheduler` and `--workers` `pacore worker`s (production defaults, PACORE_BATCH_SIZE as set) on
the other cores. Campaigns of MATH-500 problems (cycled) at preset medium (K=16, then the final round:
17 trajectories per problem) and preset low (K=4: 5 per problem). The rate is completed trajectories
per second between 10% and 90% of the campaign (the steady state), from the rows' finished_at. The
campaign is submitted and watched from this process (no CLI subprocess, no poller beside a query every
half second).

Baseline, interleaved with pacore (baseline, medium, low, baseline, ...; medians of the repeats): the
least database work a batched control plane could do per trajectory, written here: per batch of B rows,
one transaction claims them (`UPDATE ... WHERE id = ANY`) and one writes their results and ledger rows
(`unnest`), from one connection per thread, on the same PostgreSQL, with no broker and no engine.

Targets: >= 1,000/s at preset medium and >= 330/s at preset low. Prints a table and `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from chaos import FLEET_CORES, REPO  # noqa: E402
from instant_engine import MODEL  # noqa: E402
from round_hop import private_fleet, start_instant_engine  # noqa: E402

from pacore.campaigns.submit import submit  # noqa: E402
from pacore.core.campaign import CampaignConfig  # noqa: E402
from pacore.core.schedule import PRESETS  # noqa: E402
from pacore.store.database import Database  # noqa: E402


def problems_file(root: Path, name: str, n: int) -> Path:
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
    lines = []
    for i in range(n):
        record = json.loads(source[i % len(source)])
        record["id"] = f"{record['id']}-{i}"
        lines.append(json.dumps(record))
    path = root / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def baseline(url: str, rows: int, threads: int, batch: int) -> float:
    """Rows per second through the least a batched control plane does: a claim transaction and a
    result + ledger transaction per batch of `batch` rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_row (id bigint PRIMARY KEY, status text, body text)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_ledger (id bigserial PRIMARY KEY, row_id bigint, tokens int)"
        )
        conn.execute("TRUNCATE bench_row, bench_ledger")
        conn.execute(
            "INSERT INTO bench_row SELECT g, 'pending', NULL FROM generate_series(0, %s) g", (rows - 1,)
        )
    per_thread = rows // threads

    def work(offset: int) -> None:
        with psycopg.connect(url) as conn:
            for start in range(offset, offset + per_thread, batch):
                ids = list(range(start, min(start + batch, offset + per_thread)))
                with conn.transaction():
                    conn.execute(
                        "UPDATE bench_row SET status = 'running' WHERE id = ANY(%s) AND status = 'pending'",
                        (ids,),
                    )
                with conn.transaction():
                    conn.execute(
                        "UPDATE bench_row r SET status = 'done', body = v.body "
                        "FROM unnest(%s::bigint[], %s::text[]) AS v(id, body) "
                        "WHERE r.id = v.id AND r.status = 'running'",
                        (ids, [" The answer is \\boxed{7}."] * len(ids)),
                    )
                    conn.execute(
                        "INSERT INTO bench_ledger (row_id, tokens) SELECT unnest(%s::bigint[]), 3", (ids,)
                    )

    began = time.perf_counter()
    pool = [threading.Thread(target=work, args=(t * per_thread,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return per_thread * threads / (time.perf_counter() - began)


def campaign(db: Database, url: str, root: Path, name: str, preset: str, problems: int) -> dict[str, float]:
    """Submit from this process, wait for the end with a query every half second, then read the rate."""
    path = problems_file(root, name, problems)
    submit(db, path, name, CampaignConfig(rounds=PRESETS[preset], model=MODEL))
    began = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT status FROM campaign WHERE name = %s", (name,)).fetchone()[0] != "done":
            if time.monotonic() - began > 1800:
                raise SystemExit(f"campaign {name} did not finish in 30 minutes")
            time.sleep(0.5)
        times = [
            float(t)
            for (t,) in conn.execute(
                "SELECT extract(epoch FROM t.finished_at) FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
                "WHERE c.name = %s ORDER BY t.finished_at",
                (name,),
            ).fetchall()
        ]
        ledger, runs_done = conn.execute(
            "SELECT (SELECT count(*) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
            "JOIN campaign c ON c.id = t.campaign_id WHERE c.name = %s), "
            "(SELECT count(*) FROM run JOIN campaign c ON c.id = run.campaign_id "
            "WHERE c.name = %s AND run.status = 'done')",
            (name, name),
        ).fetchone()
    n = len(times)
    low, high = times[n // 10], times[(9 * n) // 10]
    return {
        "steady_per_s": (int(0.9 * n) - int(0.1 * n)) / (high - low),
        "trajectories": n,
        "ledger_rows": ledger,
        "runs_done": runs_done,
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--medium", type=int, default=300, help="problems per preset-medium campaign")
    parser.add_argument("--low", type=int, default=600, help="problems per preset-low campaign")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    args = parser.parse_args()
    batch = int(os.environ.get("PACORE_BATCH_SIZE", "16"))
    root = Path(tempfile.mkdtemp(prefix="pacore-cp-"))
    rounds: list[dict[str, dict[str, float] | float]] = []
    try:
        with ExitStack() as stack:
            engine_url = start_instant_engine(root, stack)
            fleet = private_fleet(stack, root, engine_url, args.concurrency, FLEET_CORES)
            url = fleet.env["PACORE_DATABASE_URL"]
            db = Database(url)
            stack.callback(db.dispose)
            fleet.start_scheduler()
            for _ in range(args.workers):
                fleet.start_worker()
            with psycopg.connect(url, autocommit=True) as conn:  # admission control sees the whole fleet
                while (
                    conn.execute("SELECT count(*) FROM worker WHERE status = 'up'").fetchone()[0]
                    < args.workers
                ):
                    time.sleep(0.2)
            time.sleep(2)  # their Celery consumers are up
            for r in range(args.repeats):
                base = baseline(
                    url, args.baseline_rows, args.workers * max(1, args.concurrency // batch), batch
                )
                medium = campaign(db, url, root, f"medium-{r}", "medium", args.medium)
                low = campaign(db, url, root, f"low-{r}", "low", args.low)
                rounds.append({"baseline": base, "medium": medium, "low": low})
                print(
                    f"repeat {r + 1}: baseline {base:,.0f}/s, medium {medium['steady_per_s']:,.0f}/s, "
                    f"low {low['steady_per_s']:,.0f}/s",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    base = [float(r["baseline"]) for r in rounds]  # type: ignore[arg-type]
    med = [r["medium"]["steady_per_s"] for r in rounds]  # type: ignore[index]
    low = [r["low"]["steady_per_s"] for r in rounds]  # type: ignore[index]
    trajectories = sum(int(r[p]["trajectories"]) for r in rounds for p in ("medium", "low"))  # type: ignore[index]
    ledger = sum(int(r[p]["ledger_rows"]) for r in rounds for p in ("medium", "low"))  # type: ignore[index]
    print(f"{'batch size B':<44} {batch}")
    print(
        f"{'steady completions/s, preset medium':<44} {median(med):,.0f}  ({min(med):,.0f}-{max(med):,.0f})  target >= 1,000"
    )
    print(
        f"{'steady completions/s, preset low':<44} {median(low):,.0f}  ({min(low):,.0f}-{max(low):,.0f})  target >= 330"
    )
    print(
        f"{'baseline rows/s (claim ANY + unnest, batch B)':<44} {median(base):,.0f}  ({min(base):,.0f}-{max(base):,.0f})"
    )
    print(
        f"{'medium / baseline, low / baseline':<44} {median(med) / median(base):.3f}, {median(low) / median(base):.3f}"
    )
    print(f"{'ledger rows / trajectories':<44} {ledger:,} / {trajectories:,}")
    result = {
        "batch_size": batch,
        "steady_per_s_medium": round(median(med), 1),
        "steady_per_s_low": round(median(low), 1),
        "spread_medium": [round(min(med), 1), round(max(med), 1)],
        "spread_low": [round(min(low), 1), round(max(low), 1)],
        "baseline_per_s": round(median(base), 1),
        "fraction_of_baseline_medium": round(median(med) / median(base), 4),
        "fraction_of_baseline_low": round(median(low) / median(base), 4),
        "trajectories": trajectories,
        "ledger_rows": ledger,
        "repeats": args.repeats,
        "target_medium_1000_met": median(med) >= 1000,
        "target_low_330_met": median(low) >= 330,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
