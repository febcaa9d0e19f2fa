"""Benchmark: submit 50,000 problems (100,000 runs) and export them, against a raw baseline, same run.

    .venv/bin/python ops/bench/submit_export.py [--problems 50000] [--samples 2]

Needs the local PostgreSQL (PACORE_BENCH_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres);
makes a scratch database and drops it. The problems are ../shared/data/math500.jsonl cycled with fresh ids.
Baseline: the same file streamed into a one-column table with COPY by psycopg, no validation, the floor
for getting those bytes into PostgreSQL. Prints a table and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
ADMIN = os.environ.get("PACORE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def timed_child(
    argv: list[str], env: dict[str, str], stdout: int | None = subprocess.DEVNULL
) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024


def make_problems(path: Path, n: int) -> None:
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
    with path.open("w") as f:
        for i in range(n):
            record = json.loads(source[i % len(source)])
            record["id"] = f"{record['id']}-{i}"
            f.write(json.dumps(record) + "\n")


def copy_baseline(url: str, path: Path) -> float:
    start = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE raw_lines (line text)")
        with conn.cursor().copy("COPY raw_lines (line) FROM STDIN") as copy, path.open("rb") as f:
            for line in f:
                copy.write_row((line.decode().rstrip("\n"),))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    name = f"pacore_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACORE_")} | {"PACORE_DATABASE_URL": url}
    pacore = str(Path(sys.executable).parent / "pacore")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            problems = Path(tmp) / "problems.jsonl"
            make_problems(problems, args.problems)
            subprocess.run([pacore, "db", "upgrade"], env=env, check=True, capture_output=True)
            baseline = copy_baseline(url, problems)
            submit_s, submit_mb = timed_child(
                [pacore, "submit", str(problems), "--samples", str(args.samples), "--json"], env
            )
            export_s, export_mb = timed_child(
                [pacore, "export", "problems", "-o", str(Path(tmp) / "out.jsonl")], env
            )
            exported = sum(1 for _ in (Path(tmp) / "out.jsonl").open())
            size_mb = problems.stat().st_size / 2**20
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    runs = args.problems * args.samples
    assert exported == runs, f"exported {exported} lines for {runs} runs"
    rows = [
        ("COPY baseline (raw lines)", baseline, None, 1.0),
        (
            f"pacore submit ({args.problems:,} problems, {runs:,} runs)",
            submit_s,
            submit_mb,
            submit_s / baseline,
        ),
        (f"pacore export ({runs:,} runs)", export_s, export_mb, export_s / baseline),
    ]
    print(f"input: {args.problems:,} problems, {size_mb:.1f} MiB")
    print(f"{'step':<48} {'seconds':>8} {'peak MiB':>9} {'× baseline':>11}")
    for label, seconds, mb, ratio in rows:
        print(f"{label:<48} {seconds:>8.2f} {'-' if mb is None else str(round(mb)):>9} {ratio:>11.1f}")
    result = {
        "problems": args.problems,
        "runs": runs,
        "baseline_copy_s": round(baseline, 3),
        "submit_s": round(submit_s, 3),
        "submit_peak_mib": round(submit_mb),
        "submit_vs_baseline": round(submit_s / baseline, 2),
        "export_s": round(export_s, 3),
        "export_peak_mib": round(export_mb),
        "export_vs_baseline": round(export_s / baseline, 2),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
