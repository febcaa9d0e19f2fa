"""Benchmark: the paper's low / medium / high comparison from one round-1 pool, against three separate
campaigns, on the same problems, CPU vLLM server and workers, in one run.

    .venv/bin/python ops/bench/pool_reuse.py [--problems 30] [--samples 2]

The problems are ../shared/data/aime_2024.jsonl. Pooled: high ([32, 4]) with `--pool 32` first, then
medium ([16]) and low ([4]) with `--pool 32`, which reuse its pool. Separate: the same three settings
without a pool. Everything is private (PostgreSQL, Redis, vLLM on free ports; see chaos.py). Prints
the tokens each campaign spent (`used`: pool tokens once, where generated), the totals and their ratio,
the report table of both sets, and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import REPO, Fleet, PrivatePostgres, PrivateRedis, VllmServer  # noqa: E402

SETTINGS = {"high": ["--rounds", "32,4"], "medium": ["--rounds", "16"], "low": ["--rounds", "4"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--repeat-p", type=float, default=0.9, help="the tiny model's reasoning length")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pacore-pool-"))
    try:
        with ExitStack() as stack:
            engine = VllmServer(root, args.repeat_p)
            stack.callback(engine.stop)
            pg = PrivatePostgres(root)
            pg.start()
            stack.callback(pg.stop)
            broker = PrivateRedis(root)
            stack.callback(broker.stop)
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE pool")
            fleet = Fleet(root, pg.url.rsplit("/", 1)[0] + "/pool", broker.url, engine.url, 32)
            stack.callback(fleet.stop)
            fleet.run("db", "upgrade")
            source = (REPO.parent / "shared" / "data" / "aime_2024.jsonl").read_text().splitlines()
            problems = root / "problems.jsonl"
            problems.write_text("\n".join(source[: args.problems]) + "\n")
            engine.wait()
            fleet.start_scheduler()
            for _ in range(2):
                fleet.start_worker()
            used: dict[str, int] = {}
            began = time.monotonic()
            for pooled in (True, False):
                for setting, rounds in SETTINGS.items():
                    name = f"{setting}-{'pooled' if pooled else 'separate'}"
                    extra = ["--pool", "32"] if pooled else []
                    fleet.run(
                        "submit",
                        str(problems),
                        "--name",
                        name,
                        "--model",
                        "tiny-qwen3",
                        "--samples",
                        str(args.samples),
                        *rounds,
                        *extra,
                    )
                    while json.loads(fleet.run("status", name, "--json"))["status"] != "done":
                        time.sleep(1)
                    used[name] = json.loads(fleet.run("status", name, "--json"))["tokens"]["used"]
            seconds = time.monotonic() - began
            reports = json.loads(fleet.run("report", *used, "--json"))["campaigns"]
            table = subprocess.run(
                [str(Path(sys.executable).parent / "pacore"), "report", *used],
                env=fleet.env,
                capture_output=True,
                text=True,
            ).stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
    pooled_total = sum(v for k, v in used.items() if k.endswith("pooled"))
    separate_total = sum(v for k, v in used.items() if k.endswith("separate"))
    width = max(map(len, used))
    print("\n".join(f"{name:<{width}}  {tokens:>10,} tokens used" for name, tokens in used.items()))
    print(f"{'three pooled':<{width}}  {pooled_total:>10,}")
    print(f"{'three separate':<{width}}  {separate_total:>10,}")
    print(f"pooled / separate = {pooled_total / separate_total:.3f}")
    print(table)
    result = {
        "used": used,
        "pooled_total": pooled_total,
        "separate_total": separate_total,
        "ratio": round(pooled_total / separate_total, 4),
        "seconds": round(seconds, 1),
        "reports": [
            {k: r[k] for k in ("campaign", "accuracy", "ttc_mean", "majority_vote_accuracy")} for r in reports
        ],
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
