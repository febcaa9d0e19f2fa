"""Benchmark: PaCoRe end to end on the same CPU vLLM server, same problems and schedule, three drivers,
side by side in one run:

  (i)   raw: a plain asyncio client doing the PaCoRe rounds itself (pacore.core's pure functions for
        compaction, ordering and synthesis) with one global concurrency limit, at its best concurrency
        (several tried, the best kept);
  (ii)  reference-style: one asyncio task per problem, every problem at once under one semaphore of
        1,024, as the official PaCoRe pipeline's example does;
  (iii) pacore: `pacore submit`, a scheduler and workers (Celery + Redis + PostgreSQL).

    .venv/bin/python ops/bench/end_to_end.py [--problems 40] [--repeats 3] [--repeat-p 0.99]

The engine is pinned to core 0 and every driver (and pacore's PostgreSQL, Redis, scheduler and workers)
to the other cores (taskset), so the figure measures orchestration, not CPU contention. Reported per
driver: generated tokens/s over the whole campaign and over its steady-state window (10% to 90% of the
tokens), and the engine's idle share (sampled from vLLM's /metrics `vllm:num_requests_running`); the
median of `--repeats`. Targets: pacore >= 0.97x raw and >= 1.0x the reference-style driver. Prints a
table and `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from chaos import FLEET_CORES, REPO, VllmServer  # noqa: E402
from round_hop import private_fleet  # noqa: E402

from pacore.core.compaction import Outcome  # noqa: E402
from pacore.core.rounds import after_round  # noqa: E402
from pacore.core.schedule import PRESETS  # noqa: E402

MODEL = "tiny-qwen3"
ROUNDS = PRESETS["low"]


class IdleMeter:
    """Samples the engine's running-request gauge at 10 Hz; the idle share is the share of samples at 0."""

    def __init__(self, url: str) -> None:
        self.url, self.samples, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.wait(0.1):
                text = client.get(f"{self.url}/metrics").text
                running = sum(
                    float(v)
                    for v in re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+]+)$", text, re.M)
                )
                self.samples.append(running)

    def __enter__(self) -> IdleMeter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def idle_share(self) -> float:
        return sum(s == 0 for s in self.samples) / len(self.samples) if self.samples else 0.0


def throughput(events: list[tuple[float, int]], start: float, end: float) -> tuple[float, float]:
    """(tokens/s over the whole run, tokens/s between 10% and 90% of the tokens)."""
    total = sum(t for _, t in events)
    events = sorted(events)
    acc, t10, t90, tok10, tok90 = 0, start, end, 0, total
    for at, tokens in events:
        before = acc
        acc += tokens
        if before < 0.1 * total <= acc:
            t10, tok10 = at, acc
        if before < 0.9 * total <= acc:
            t90, tok90 = at, acc
    steady = (tok90 - tok10) / (t90 - t10) if t90 > t10 else 0.0
    return total / (end - start), steady


async def solve(
    client: httpx.AsyncClient,
    url: str,
    messages: list[dict[str, Any]],
    gate: asyncio.Semaphore,
    events: list[tuple[float, int]],
) -> None:
    """One PaCoRe run: the rounds, compaction, ordering and synthesis from pacore.core."""
    schedule = [*ROUNDS, 1]
    current = messages
    for index, k in enumerate(schedule, start=1):

        async def one(i: int, current: list[dict[str, Any]] = current) -> Outcome:
            async with gate:
                response = await client.post(
                    f"{url}/v1/chat/completions", json={"model": MODEL, "messages": current}
                )
            body = response.json()
            events.append((time.monotonic(), int(body["usage"]["completion_tokens"])))
            message = body["choices"][0]["message"]
            reasoning = message.get("reasoning", message.get("reasoning_content"))
            return Outcome(
                i, "done", message.get("content") or "", reasoning, body["choices"][0]["finish_reason"]
            )

        # completion order, as the official pipeline collects them (asyncio.as_completed)
        outcomes = [await done for done in asyncio.as_completed([one(i) for i in range(k)])]
        next_k = schedule[index] if index < len(schedule) else None
        decision = after_round(next_k, index, messages, outcomes, seed=42)
        if decision.kind != "next_round":
            return
        assert decision.next_messages is not None
        current = decision.next_messages


async def drive(
    url: str, problems: list[list[dict[str, Any]]], concurrency: int
) -> tuple[list[tuple[float, int]], float, float]:
    events: list[tuple[float, int]] = []
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.monotonic()
        await asyncio.gather(*(solve(client, url, p, gate, events) for p in problems))
        return events, start, time.monotonic()


def run_asyncio(url: str, problems: list[list[dict[str, Any]]], concurrency: int) -> dict[str, float]:
    with IdleMeter(url) as meter:
        events, start, end = asyncio.run(drive(url, problems, concurrency))
    whole, steady = throughput(events, start, end)
    return {
        "tokens_per_s": whole,
        "steady_tokens_per_s": steady,
        "idle_share": meter.idle_share,
        "seconds": end - start,
    }


def run_pacore(
    engine_url: str, problems_path: Path, root: Path, repeat: int, workers: int, concurrency: int
) -> dict[str, float]:
    with ExitStack() as stack:
        (root / f"pacore-{repeat}").mkdir()
        fleet = private_fleet(stack, root / f"pacore-{repeat}", engine_url, concurrency, FLEET_CORES)
        fleet.start_scheduler()
        for _ in range(workers):
            fleet.start_worker()
        time.sleep(3)
        with IdleMeter(engine_url) as meter:
            start_wall = time.time()
            start = time.monotonic()
            fleet.run("submit", str(problems_path), "--name", "e2e", "--model", MODEL, "--preset", "low")
            while json.loads(fleet.run("status", "e2e", "--json"))["status"] != "done":
                time.sleep(0.5)
            end = time.monotonic()
        with psycopg.connect(fleet.env["PACORE_DATABASE_URL"]) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM finished_at), completion_tokens FROM trajectory WHERE status = 'done'"
            ).fetchall()
    events = [(float(at) - start_wall + start, int(tokens)) for at, tokens in rows]
    whole, steady = throughput(events, start, end)
    return {
        "tokens_per_s": whole,
        "steady_tokens_per_s": steady,
        "idle_share": meter.idle_share,
        "seconds": end - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeat-p", type=float, default=0.99)
    parser.add_argument("--concurrencies", default="32,64,128", help="tried for the raw client")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if FLEET_CORES:  # the drivers (this process and its children) off the engine's core
        os.sched_setaffinity(0, {int(c) for c in range(int(FLEET_CORES.split("-")[0]), os.cpu_count() or 2)})
    root = Path(tempfile.mkdtemp(prefix="pacore-e2e-"))
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()[: args.problems]
    problems = [json.loads(line)["messages"] for line in source]
    problems_path = root / "problems.jsonl"
    problems_path.write_text("\n".join(source) + "\n")
    results: dict[str, list[dict[str, float]]] = {"raw": [], "reference": [], "pacore": []}
    best_concurrency = 0
    try:
        with ExitStack() as stack:
            engine = VllmServer(root, args.repeat_p)
            stack.callback(engine.stop)
            engine.wait()
            run_asyncio(engine.url, problems[:4], 16)  # warm-up
            tried = {c: run_asyncio(engine.url, problems, c) for c in map(int, args.concurrencies.split(","))}
            best_concurrency = max(tried, key=lambda c: tried[c]["tokens_per_s"])
            for repeat in range(args.repeats):
                results["raw"].append(run_asyncio(engine.url, problems, best_concurrency))
                results["reference"].append(run_asyncio(engine.url, problems, 1024))
                per_worker = max(1, best_concurrency // args.workers)
                results["pacore"].append(
                    run_pacore(engine.url, problems_path, root, repeat, args.workers, per_worker)
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()
    }
    print(f"{'driver':<12} {'tokens/s':>10} {'steady':>10} {'idle':>8} {'seconds':>8}")
    for name, m in median.items():
        print(
            f"{name:<12} {m['tokens_per_s']:>10,.0f} {m['steady_tokens_per_s']:>10,.0f} {m['idle_share']:>8.1%} {m['seconds']:>8.1f}"
        )
    ratio_raw = median["pacore"]["tokens_per_s"] / median["raw"]["tokens_per_s"]
    ratio_ref = median["pacore"]["tokens_per_s"] / median["reference"]["tokens_per_s"]
    steady_raw = median["pacore"]["steady_tokens_per_s"] / median["raw"]["steady_tokens_per_s"]
    print(f"pacore / raw = {ratio_raw:.3f} (steady {steady_raw:.3f}), target >= 0.97")
    print(f"pacore / reference-style = {ratio_ref:.3f}, target >= 1.0")
    print(
        "RESULT "
        + json.dumps(
            {
                "median": median,
                "raw_concurrency": best_concurrency,
                "pacore_over_raw": round(ratio_raw, 4),
                "pacore_over_raw_steady": round(steady_raw, 4),
                "pacore_over_reference": round(ratio_ref, 4),
                "repeats": args.repeats,
                "problems": args.problems,
            }
        )
    )


if __name__ == "__main__":
    main()
