"""Benchmark: the worker's HTTP client, alone: CPU per generated token (issue #14 item 5).

One scripted engine (tests/fake_engine.py, a real HTTP server, pinned to core 0) streams long
generations in chunks of `--stream-interval` tokens; a client process pinned to the other core runs
`--requests` generations from `--concurrency` threads through pacore's `worker.engine.OpenAIEngine`, with
a guard on every chunk as a worker has, and reports its own CPU time (user + system) over the tokens
the engine says it streamed. With `--before PATH` (a checkout of an earlier pacore, e.g.
`git worktree add /tmp/before <commit>`) the same client runs that code too, interleaved (ABAB...,
`--repeats` each); medians and spreads.

    .venv/bin/python ops/bench/client_cpu.py --before /tmp/before [--repeats 5]

Prints a table and one `RESULT {json}` line: `after_us_per_token`, `before_us_per_token` (medians) and
`ratio` (after / before).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import ENGINE_CORES, FLEET_CORES, REPO, pin  # noqa: E402

ENGINE_CORE, CLIENT_CORE = ENGINE_CORES, FLEET_CORES

SERVER = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.fake_engine import FakeEngine
with FakeEngine() as engine:
    print(engine.url, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
"""

CLIENT = """
import inspect, json, resource, sys, urllib.request
sys.path.insert(0, {root!r})
from concurrent.futures import ThreadPoolExecutor
from worker.engine import GenerationRequest, OpenAIEngine

engine = OpenAIEngine({url!r}, pool={concurrency}, stream_interval={interval})
chunks = 0

def guard(raw, streamed, ids):
    global chunks
    chunks += 1
    return True

# a worker's guard says when it would wait on the database (once a block): here, never
extra = {{"may_block": lambda streamed: False}} if "may_block" in inspect.signature(engine.generate).parameters else {{}}

def one(k):
    request = GenerationRequest([{{"role": "user", "content": f"problem {{k}} LONG{tokens}"}}], "fake-model")
    return engine.generate(request, guard, **extra).completion_tokens

before = resource.getrusage(resource.RUSAGE_SELF)
with ThreadPoolExecutor({concurrency}) as pool:
    counted = sum(pool.map(one, range({requests})))
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({{"cpu": cpu, "counted": counted, "chunks": chunks}}))
"""


def run_client(root: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    code = CLIENT.format(
        root=root,
        url=url,
        concurrency=args.concurrency,
        interval=args.stream_interval,
        tokens=args.tokens,
        requests=args.requests,
    )
    started = time.monotonic()
    done = subprocess.run(
        [*pin(CLIENT_CORE), sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"the client ({root}) failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = args.requests * (args.tokens + 5)  # the script: its reasoning words, 4 of content, the end
    if out["counted"] != expected:
        raise SystemExit(
            f"the client ({root}) counted {out['counted']} tokens, the engine streamed {expected}"
        )
    return {
        "us_per_token": out["cpu"] / expected * 1e6,
        "tokens_per_chunk": expected / max(1, out["chunks"]),
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", help="a checkout of an earlier pacore to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=1000, help="reasoning tokens per generation")
    parser.add_argument("--stream-interval", type=int, default=64)
    args = parser.parse_args()
    server = subprocess.Popen(
        [*pin(ENGINE_CORE), sys.executable, "-c", SERVER.format(repo=str(REPO))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        roots = {"after": str(REPO)} | ({"before": args.before} if args.before else {})
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in roots}
        for repeat in range(args.repeats):
            for label, root in roots.items():
                runs[label].append(run_client(root, url, args))
                print(
                    f"repeat {repeat + 1} {label}: {runs[label][-1]['us_per_token']:.2f} us/token", flush=True
                )
    finally:
        server.kill()
    result: dict[str, object] = {}
    for label, figures in runs.items():
        values = [f["us_per_token"] for f in figures]
        result[f"{label}_us_per_token"] = {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }
        result[f"{label}_tokens_per_chunk"] = round(
            statistics.median(f["tokens_per_chunk"] for f in figures), 1
        )
    if "before" in runs:
        ratios = [
            a["us_per_token"] / b["us_per_token"] for a, b in zip(runs["after"], runs["before"], strict=True)
        ]
        result["ratio"] = {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
        }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
