"""Benchmark: the round hop, from the last trajectory of a round finished (its row's finished_at) to the
first request of the next round arriving at the engine; p50 and p99 over runs. Targets: p50 <= 50 ms,
p99 <= 500 ms, at rest and in the burst.

    .venv/bin/python ops/bench/round_hop.py [--problems 60]

Private PostgreSQL and Redis (see chaos.py); an engine that answers at once (instant_engine.py) as a
process of its own on core 0; one `pacore scheduler` and one `pacore worker` with production defaults
on the other cores. Each MATH-500 problem is one run of preset low: round 1 (K=4), then the final
round, so each run makes one hop. At rest: a third of the problems, one single-problem campaign at a
time, each submitted once the one before is done. The burst: the other two thirds in one campaign, all
started together, so that their hops queue behind each other as they would in a busy fleet. Campaigns
are submitted and watched from this process (no CLI subprocess; a query every 0.1 s). Prints a table
and `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import ENGINE_CORES, FLEET_CORES, REPO, Fleet, PrivatePostgres, PrivateRedis, pin  # noqa: E402
from instant_engine import MODEL  # noqa: E402

from pacore.campaigns.submit import submit  # noqa: E402
from pacore.core.campaign import CampaignConfig  # noqa: E402
from pacore.core.schedule import PRESETS  # noqa: E402
from pacore.store.database import Database  # noqa: E402

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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_cpu_seconds(fields: list[str]) -> float:
    """User + system CPU seconds from the fields of /proc/PID/stat after the command's name."""
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def process_cpu_seconds(pid: int) -> float:
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """Every live process: its pid, its command's name and the fields of /proc/PID/stat after it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since listed
            continue
        yield int(entry.name), stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()


def postgres_cpu_seconds(data: Path) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster, its live children, and its children that
    have exited (counted in its own cutime and cstime once reaped)."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for pid, _, fields in processes():
        if pid == postmaster:
            total += stat_cpu_seconds(fields) + (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        elif int(fields[1]) == postmaster:
            total += stat_cpu_seconds(fields)
    return total


def start_instant_engine(root: Path, stack: ExitStack) -> str:
    """The instant engine as a process of its own on the engine's core; returns its URL."""
    proc = subprocess.Popen(
        [*pin(ENGINE_CORES), sys.executable, str(Path(__file__).with_name("instant_engine.py"))],
        stdout=subprocess.PIPE,
        stderr=(root / "engine.log").open("w"),
        text=True,
    )
    stack.callback(proc.kill)
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def arrivals(engine_url: str) -> dict[str, float]:
    """When each request content first reached the engine (wall time)."""
    with urllib.request.urlopen(engine_url + "/bench/arrivals", timeout=30) as answer:
        out: dict[str, float] = {}
        for at, content in json.load(answer):
            out.setdefault(content, at)
        return out


def problems_file(root: Path, name: str, lines: list[str]) -> Path:
    path = root / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_campaign(
    db: Database, conn: psycopg.Connection[Any], root: Path, name: str, lines: list[str]
) -> None:
    """Submit from this process; wait for the campaign to be done with a query every 0.1 s."""
    submit(db, problems_file(root, name, lines), name, CampaignConfig(rounds=PRESETS["low"], model=MODEL))
    deadline = time.monotonic() + 600
    while conn.execute("SELECT status FROM campaign WHERE name = %s", (name,)).fetchone() != ("done",):
        if time.monotonic() > deadline:
            raise SystemExit(f"campaign {name} was not done in 10 minutes")
        time.sleep(0.1)


def measure(conn: psycopg.Connection[Any], engine_url: str, names: list[str]) -> dict[str, Any]:
    """Hops of the runs of these campaigns: p50, p99 and where the time goes."""
    rows = conn.execute(
        "SELECT extract(epoch FROM max(t.finished_at)), r2.input_messages -> -1 ->> 'content', "
        "extract(epoch FROM r2.created_at), (SELECT extract(epoch FROM t2.published_at) FROM trajectory t2 "
        "WHERE t2.round_id = r2.id LIMIT 1) FROM round r1 JOIN run ON run.id = r1.run_id "
        "JOIN campaign c ON c.id = run.campaign_id AND c.name = ANY(%s) "
        "JOIN trajectory t ON t.round_id = r1.id JOIN round r2 ON r2.run_id = r1.run_id AND r2.index = 2 "
        "WHERE r1.index = 1 GROUP BY r1.id, r2.id",
        (names,),
    ).fetchall()
    arrived = arrivals(engine_url)
    if any(content not in arrived for _, content, _, _ in rows):
        raise SystemExit("a round-2 request never reached the engine")
    hops = [(arrived[content] - float(finished)) * 1000 for finished, content, _, _ in rows]
    # Where the time goes: finished -> next round created (the callback), -> published, -> at the engine.
    # A trajectory a worker claimed before the scheduler stamped it keeps no publish time (the stamp
    # skips rows a claim holds): the two parts after the callback are over the stamped ones only.
    stamped = [row for row in rows if row[3] is not None]
    parts = {
        "advance (callback)": [(float(c) - float(f)) * 1000 for f, _, c, _ in rows],
        "publish": [(float(p) - float(c)) * 1000 for _, _, c, p in stamped] or [float("nan")],
        "delivery to the engine": [(arrived[t] - float(p)) * 1000 for _, t, _, p in stamped]
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


def starts(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, float]:
    """Submit to start: each campaign's creation to its first round's, p50 and max (the scheduler's
    dispatch tick creates round 1; a submit wakes it when it commits)."""
    waits = [
        float(ms)
        for (ms,) in conn.execute(
            "SELECT extract(epoch FROM min(r.created_at) - c.created_at) * 1000 FROM campaign c "
            "JOIN run ON run.campaign_id = c.id JOIN round r ON r.run_id = run.id "
            "WHERE c.name = ANY(%s) GROUP BY c.id",
            (names,),
        ).fetchall()
    ]
    return {"start_p50_ms": round(quantile(waits, 0.5), 1), "start_max_ms": round(max(waits), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=60, help="a third at rest, the rest in the burst")
    args = parser.parse_args()
    if args.problems < 6:
        parser.error(f"--problems must be at least 6 (a third of them run at rest), not {args.problems}")
    root = Path(tempfile.mkdtemp(prefix="pacore-hop-"))
    try:
        with ExitStack() as stack:
            engine_url = start_instant_engine(root, stack)
            fleet = private_fleet(stack, root, engine_url, 64, FLEET_CORES)
            url = fleet.env["PACORE_DATABASE_URL"]
            db = Database(url)
            stack.callback(db.dispose)
            fleet.start_scheduler()
            fleet.start_worker()
            conn = stack.enter_context(psycopg.connect(url, autocommit=True))
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM worker WHERE status = 'up'").fetchone() != (1,):
                if time.monotonic() > deadline:
                    raise SystemExit(
                        "the worker did not register in 2 minutes (PACORE_BENCH_KEEP=1 keeps its log)"
                    )
                time.sleep(0.2)  # the worker has registered; its Celery consumer follows
            source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
            source = source[: args.problems]
            rest = source[: len(source) // 3]
            for i, line in enumerate(rest):  # at rest: one single-problem campaign at a time
                run_campaign(db, conn, root, f"rest-{i}", [line])
            at_rest = measure(conn, engine_url, [f"rest-{i}" for i in range(len(rest))])
            at_rest.update(starts(conn, [f"rest-{i}" for i in range(len(rest))]))
            # The burst: every run's round 1 finishes at about the same time; hops queue behind each other.
            processes = {
                "scheduler": lambda: process_cpu_seconds(fleet.others[0].pid),
                "worker": lambda: process_cpu_seconds(fleet.workers[0].pid),
                "postgres": lambda: postgres_cpu_seconds(root / "pgdata"),
            }
            before = {name: read() for name, read in processes.items()}
            run_campaign(db, conn, root, "burst", source[len(rest) :])
            in_burst = measure(conn, engine_url, ["burst"])
            # what a run of the burst (round 1 of K=4, the hop, the final round) cost each process
            in_burst["cpu_ms_per_run"] = {
                name: round((read() - before[name]) * 1000 / in_burst["hops"], 2)
                for name, read in processes.items()
            }
    finally:
        if not os.environ.get("PACORE_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'':<24} {'hops':>5} {'p50 ms':>8} {'p99 ms':>8}   callback / publish / delivery, p50 ms")
    for name, m in (("at rest", at_rest), ("burst", in_burst)):
        parts = " / ".join(f"{v:.0f}" for v in m["parts_p50_ms"].values())
        print(f"{name:<24} {m['hops']:>5} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f}   {parts}")
    print("targets: p50 <= 50 ms, p99 <= 500 ms")
    print(
        f"submit to round 1, at rest: p50 {at_rest['start_p50_ms']:.0f} ms, max {at_rest['start_max_ms']:.0f} ms"
    )
    cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in in_burst["cpu_ms_per_run"].items())
    print(f"CPU per run of the burst, ms: {cpu}")
    result = {
        "at_rest": at_rest,
        "burst": in_burst,
        "p50_target_met": at_rest["p50_ms"] <= 50,
        "p99_target_met": at_rest["p99_ms"] <= 500,
        "burst_p50_target_met": in_burst["p50_ms"] <= 50,
        "burst_p99_target_met": in_burst["p99_ms"] <= 500,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
