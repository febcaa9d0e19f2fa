"""Benchmark: does a pacore campaign generate at engine speed? The same problems and PaCoRe schedule on
the same CPU vLLM server, driven side by side in one run by:

  raw         a plain asyncio client doing the PaCoRe rounds itself (pacore.core's pure functions for
              compaction, ordering and synthesis), non-streaming, under one semaphore: at its best
              concurrency (a sweep), and at pacore's slot count (`raw@slots`);
  streaming   the same client streaming each request exactly as pacore's worker asks for it
              (worker.engine.request_body: chunks of PACORE_STREAM_INTERVAL tokens, token ids, usage only
              at the end), at pacore's slot count;
  reference   what the official PaCoRe pipeline does: non-streaming, one semaphore of 64, every problem
              at once (its as_completed order);
  pacore      the campaign submitted in this process (no CLI subprocess) to a scheduler and workers
              (Celery + Redis + PostgreSQL), finished when the campaign row says so.

    .venv/bin/python ops/bench/end_to_end.py [--problems 160] [--repeats 5] [--repeat-p 0.998]

The engine is pinned to core 0 and everything else (this process, pacore's PostgreSQL, Redis, scheduler
and workers) to the other cores (taskset), so the figures measure the data path, not CPU contention.
Tokens are the engine's own `vllm:generation_tokens_total` delta over a run, over the run's wall time
(pacore: from the submit to the campaign's `finished_at`). Nothing polls while a run is measured but
pacore's own processes and a 0.5 s query of the campaign's status in this process.

First a sweep on the first `--sweep-problems` (interleaved, medians of `--sweep-repeats`): raw at each of
`--concurrencies` (its fastest is raw's best), then streaming at each of `--intervals` beside raw@slots.
The suggested PACORE_STREAM_INTERVAL is the smallest interval whose chunks cost the engine's API server
at most 1% of the engine's CPU per token over what non-streaming requests cost it (the engine's
processes' CPU, read from /proc; it drifts too, by about +-10% between identical runs, so the repeats
matter). Then `--repeats` rounds of every driver,
interleaved (ABC ABC ...): the ratios are medians of the per-round ratios, with their spread (min, max).
pacore's slots (its workers' --concurrency in all) are raw's best concurrency unless `--slots N`, as
a lab sets its workers to what its engine does best; the reference stays at the official 64. Drivers
that are one client at one concurrency (raw at its best and raw@slots; the reference when that is 64)
run once a round and count for each name. Beside tokens/s: the generated tokens per engine step
(`vllm:iteration_tokens_total` count), how full a driver kept the engine's batch (moved by the data path
and by the run's random tail, not by the engine's drift in speed, which is +-15% over minutes at a
constant load on this box, with no steal); its ratios are `batch_ratio_vs_*`. And the CPU per generated
token of the client and of each engine process (API server, engine core, model). Then one pacore run with
PACORE_TOKEN_BLOCK=256, so that trajectories continue in segments: the continuation prefill the engine
computed (`local_compute` in `vllm:prompt_tokens_by_source_total`) against its cache hits. With
`--before PATH` (a checkout of an earlier pacore, e.g. `git worktree add /tmp/before <commit>`) each round
also runs that pacore (same venv, its code first on PYTHONPATH), for the before/after of the client CPU
per generated token (the workers' user + system CPU over the engine's tokens).

Targets: ratio_vs_raw >= 0.97, ratio_vs_raw_streaming >= 0.99, ratio_vs_reference >= 1.0. Prints a table
and `RESULT {json}`.
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
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from chaos import FLEET_CORES, REPO, VllmServer  # noqa: E402
from round_hop import private_fleet, process_cpu_seconds, processes, stat_cpu_seconds  # noqa: E402

from pacore.core.compaction import Outcome  # noqa: E402
from pacore.core.rounds import after_round  # noqa: E402
from pacore.core.schedule import PRESETS  # noqa: E402
from pacore.settings import DEFAULT_STREAM_INTERVAL  # noqa: E402
from worker.engine import GenerationRequest, request_body  # noqa: E402

MODEL = "tiny-qwen3"
PRESET = "low"
ROUNDS = PRESETS[PRESET]
REFERENCE_CONCURRENCY = 64  # the official pipeline's semaphore


def engine_counters(url: str) -> dict[str, float]:
    """The engine's generated tokens and its prompt tokens by source, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text

    def total(pattern: str) -> float:
        return sum(float(v) for v in re.findall(pattern + r"\{[^}]*\} ([0-9.e+]+)$", text, re.M))

    return {
        "generated": total(r"^vllm:generation_tokens_total"),
        "iterations": total(r"^vllm:iteration_tokens_total_count"),  # engine steps the server recorded
        **{
            source: sum(
                float(v)
                for v in re.findall(
                    r'^vllm:prompt_tokens_by_source_total\{[^}]*source="' + source + r'"[^}]*\} ([0-9.e+]+)$',
                    text,
                    re.M,
                )
            )
            for source in ("local_compute", "local_cache_hit")
        },
    }


ENGINE_PARTS = ("api_server", "engine_core", "model")


def engine_cpu(session: int) -> dict[str, float]:
    """CPU seconds (user + system) of the engine's processes, by part: the API server (the session's
    leader: HTTP, chat template, detokenizing, the reasoning parser, streamed chunks), the engine core
    (scheduling) and the model's worker. All share the engine's core, so what the API server spends per
    token is taken from the model."""
    parts = dict.fromkeys(ENGINE_PARTS, 0.0)
    for pid, name, fields in processes():
        if int(fields[3]) != session:
            continue
        if pid == session:
            part = "api_server"
        elif name.startswith("VLLM::EngineCor"):
            part = "engine_core"
        elif name.startswith("VLLM::Worker"):
            part = "model"
        else:  # multiprocessing's resource tracker
            continue
        parts[part] += stat_cpu_seconds(fields)
    return parts


def measured(url: str, session: int, run: Callable[[], tuple[float, float, float]]) -> dict[str, float]:
    """Run a driver (which returns its start and end on the wall clock, and its client CPU seconds);
    the engine's counters and its processes' CPU (the server's session `session`) before and after it."""
    before, cpu_before = engine_counters(url), engine_cpu(session)
    start, end, cpu = run()
    after, cpu_after = engine_counters(url), engine_cpu(session)
    tokens = after["generated"] - before["generated"]
    iterations = after["iterations"] - before["iterations"]

    def per_token(seconds: float) -> float:  # µs of CPU per generated token
        return seconds / tokens * 1e6 if tokens else 0.0

    return {
        # what serving the driver's requests cost each engine process per generated token: the API
        # server's share of the engine's core is taken from the model
        **{
            f"{part}_cpu_us_per_token": per_token(cpu_after[part] - cpu_before[part]) for part in ENGINE_PARTS
        },
        "tokens_per_s": tokens / (end - start),
        # generated tokens per engine step: how full the data path keeps the engine's batch, whatever the
        # engine's own speed (which drifts by +-15% over minutes on this box at a constant load)
        "tokens_per_step": tokens / iterations if iterations else 0.0,
        "steps_per_s": iterations / (end - start),
        "tokens": tokens,
        "seconds": end - start,
        "client_cpu_us_per_token": per_token(cpu),
        "prefill_computed": after["local_compute"] - before["local_compute"],
        "prefill_cached": after["local_cache_hit"] - before["local_cache_hit"],
    }


# --- the asyncio drivers -------------------------------------------------------------------------------


async def ask_whole(client: httpx.AsyncClient, url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": messages})
    choice = response.json()["choices"][0]
    message = choice["message"]
    return {
        "content": message.get("content") or "",
        "reasoning": message.get("reasoning", message.get("reasoning_content")),
        "finish": choice["finish_reason"],
    }


async def ask_streamed(
    client: httpx.AsyncClient, url: str, messages: list[dict[str, Any]], interval: int
) -> dict[str, Any]:
    body = request_body(GenerationRequest(messages, MODEL), stream_interval=interval)
    content: list[str] = []
    reasoning: list[str] = []
    finish = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[5:])["choices"]:
                delta = choice.get("delta") or {}
                if piece := delta.get("reasoning", delta.get("reasoning_content")):
                    reasoning.append(piece)
                if delta.get("content"):
                    content.append(delta["content"])
                finish = choice.get("finish_reason") or finish
    return {"content": "".join(content), "reasoning": "".join(reasoning) or None, "finish": finish}


async def solve(ask: Callable[..., Any], messages: list[dict[str, Any]], gate: asyncio.Semaphore) -> None:
    """One PaCoRe run: the rounds, compaction, ordering and synthesis from pacore.core."""
    schedule = [*ROUNDS, 1]
    current = messages
    for index, k in enumerate(schedule, start=1):

        async def one(i: int, current: list[dict[str, Any]] = current) -> Outcome:
            async with gate:
                answer = await ask(current)
            return Outcome(i, "done", answer["content"], answer["reasoning"], answer["finish"])

        # completion order, as the official pipeline collects them (asyncio.as_completed)
        outcomes = [await done for done in asyncio.as_completed([one(i) for i in range(k)])]
        next_k = schedule[index] if index < len(schedule) else None
        decision = after_round(next_k, index, messages, outcomes, seed=42)
        if decision.kind != "next_round":
            return
        assert decision.next_messages is not None
        current = decision.next_messages


def run_asyncio(
    url: str, problems: list[list[dict[str, Any]]], concurrency: int, interval: int | None = None
) -> tuple[float, float, float]:
    """Every problem at once under one semaphore; `interval`: streamed, else non-streaming."""

    async def drive() -> tuple[float, float, float]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:

            async def ask(messages: list[dict[str, Any]]) -> dict[str, Any]:
                if interval is None:
                    return await ask_whole(client, url, messages)
                return await ask_streamed(client, url, messages, interval)

            cpu, start = time.process_time(), time.time()
            await asyncio.gather(*(solve(ask, p, gate) for p in problems))
            return start, time.time(), time.process_time() - cpu

    return asyncio.run(drive())


# --- pacore ----------------------------------------------------------------------------------------------


def run_pacore(
    engine_url: str,
    session: int,
    problems_path: Path,
    root: Path,
    label: str,
    workers: int,
    concurrency: int,
    **env: str,
) -> dict[str, float]:
    """A private fleet, started and idle; the campaign submitted in this process; its end read from the
    campaign row. The ledger's tokens (the campaign's used) are reported next to the engine's."""
    from pacore.campaigns.submit import submit
    from pacore.core.campaign import CampaignConfig
    from pacore.store.database import Database, normalize_url

    with ExitStack() as stack:
        (root / label).mkdir()
        fleet = private_fleet(stack, root / label, engine_url, concurrency, FLEET_CORES)
        fleet.env.update(env)
        fleet.start_scheduler()
        pids = [fleet.start_worker().pid for _ in range(workers)]
        url = fleet.env["PACORE_DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM worker WHERE status = 'up'").fetchone()[0] < workers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the workers did not come up; logs in {root / label}")
                time.sleep(0.5)  # before the measured run
            time.sleep(3)  # each worker's Celery consumer starts after it registers
            db = Database(normalize_url(url))
            stack.callback(db.dispose)
            config = CampaignConfig(rounds=list(ROUNDS), model=MODEL)

            def run() -> tuple[float, float, float]:
                cpu = sum(process_cpu_seconds(pid) for pid in pids)
                start = time.time()
                campaign = submit(db, problems_path, "e2e", config).campaign_id
                while True:
                    status, finished = conn.execute(
                        "SELECT status, extract(epoch FROM finished_at) FROM campaign WHERE id = %s",
                        (campaign,),
                    ).fetchone()
                    if status == "done":
                        return start, float(finished), sum(process_cpu_seconds(pid) for pid in pids) - cpu
                    if status != "active":
                        raise SystemExit(f"the campaign is {status}; logs in {root / label}")
                    time.sleep(0.5)  # the campaign's end is read from its row, not from this poll

            result = measured(engine_url, session, run)
            used, runs_done = conn.execute(
                "SELECT c.tokens_used, count(*) FILTER (WHERE r.status = 'done') FROM campaign c "
                "JOIN run r ON r.campaign_id = c.id GROUP BY c.id"
            ).fetchone()
    return {**result, "ledger_tokens": float(used), "runs_done": float(runs_done)}


# --- the report ------------------------------------------------------------------------------------------


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def ratio_stats(
    numerators: list[dict[str, float]], denominators: list[dict[str, float]], key: str = "tokens_per_s"
) -> dict[str, float]:
    ratios = [a[key] / b[key] for a, b in zip(numerators, denominators, strict=True)]
    return {
        "median": round(statistics.median(ratios), 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
    }


class Bench:
    """The drivers on one engine, each run measured by the engine's counters."""

    def __init__(self, args: argparse.Namespace, engine: VllmServer, root: Path, problems_path: Path) -> None:
        self.args, self.url, self.root, self.problems_path = args, engine.url, root, problems_path
        self.session = engine.proc.pid  # the server runs in a session of its own
        self.problems = [json.loads(line)["messages"] for line in problems_path.read_text().splitlines()]
        self.best = REFERENCE_CONCURRENCY  # the raw client's best concurrency, once swept
        self.follow_best = args.slots == "best"
        self.use_slots(REFERENCE_CONCURRENCY if self.follow_best else int(args.slots))

    def use_slots(self, slots: int) -> None:
        """pacore's generations in all, split over its workers (each worker's --concurrency)."""
        self.per_worker = max(1, slots // self.args.workers)
        self.slots = self.per_worker * self.args.workers

    def raw(self, concurrency: int, problems: int | None = None) -> dict[str, float]:
        chosen = self.problems[:problems]
        return measured(self.url, self.session, lambda: run_asyncio(self.url, chosen, concurrency))

    def streaming(self, interval: int, problems: int | None = None) -> dict[str, float]:
        chosen = self.problems[:problems]
        return measured(self.url, self.session, lambda: run_asyncio(self.url, chosen, self.slots, interval))

    def pacore(self, label: str, **env: str) -> dict[str, float]:
        env = {"PACORE_STREAM_INTERVAL": str(self.args.stream_interval), **env}
        return run_pacore(
            self.url,
            self.session,
            self.problems_path,
            self.root,
            label,
            self.args.workers,
            self.per_worker,
            **env,
        )

    def sweep(self) -> dict[str, Any]:
        """On the first `--sweep-problems`, `--sweep-repeats` interleaved rounds of raw at each concurrency,
        then of streaming at each interval beside raw@slots; medians. The best concurrency is raw's
        fastest. The suggested interval is the smallest whose chunks cost the engine's API server at most
        1% of the engine's CPU per token over what raw@slots costs it: what streaming takes from the model,
        in CPU, not in tokens/s (which the engine's drift moves by far more than 1%)."""
        n, repeats = self.args.sweep_problems, self.args.sweep_repeats
        concurrencies = [int(c) for c in self.args.concurrencies.split(",")]
        intervals = [int(i) for i in self.args.intervals.split(",")]
        raw_runs: dict[int, list[dict[str, float]]] = {c: [] for c in concurrencies}
        for _ in range(repeats):
            for c in concurrencies:
                raw_runs[c].append(self.raw(c, n))
        raw = {c: medians(runs) for c, runs in raw_runs.items()}
        self.best = max(raw, key=lambda c: raw[c]["tokens_per_s"])
        if self.follow_best:  # as a lab sets its workers' --concurrency to what its engine does best
            self.use_slots(self.best)
        base_runs: list[dict[str, float]] = []
        streaming_runs: dict[int, list[dict[str, float]]] = {i: [] for i in intervals}
        for _ in range(repeats):
            base_runs.append(self.raw(self.slots, n))
            for i in intervals:
                streaming_runs[i].append(self.streaming(i, n))
        base = medians(base_runs)
        engine_per_token = sum(base[f"{part}_cpu_us_per_token"] for part in ENGINE_PARTS)
        streaming = {}
        for i, runs in streaming_runs.items():
            m = medians(runs)
            extra = m["api_server_cpu_us_per_token"] - base["api_server_cpu_us_per_token"]
            streaming[i] = {
                **m,
                "ratio_vs_raw_at_slots": ratio_stats(runs, base_runs)["median"],
                "chunk_cost_share": extra / engine_per_token,
            }
        cheap = [i for i, v in streaming.items() if v["chunk_cost_share"] <= 0.01]
        suggested = min(cheap) if cheap else max(intervals)
        return {"raw": raw, "raw@slots": base, "streaming": streaming, "suggested_stream_interval": suggested}

    def rounds(self) -> dict[str, list[dict[str, float]]]:
        """Every driver once per round, the rounds one after another (ABCDE ABCDE ...). Drivers that are
        the same client at the same concurrency (raw at its best, raw@slots and the reference, when the
        best and the slot count are 64) run once and count for each of their names: the round's time
        goes to more repeats instead of to identical runs."""
        names = {
            "raw": ("raw", self.best),
            "raw@slots": ("raw", self.slots),
            "streaming": ("streaming", self.slots),
            "reference": ("raw", REFERENCE_CONCURRENCY),
            "pacore": ("pacore", self.slots),
        }
        if self.args.before:
            names["pacore_before"] = ("pacore_before", self.slots)
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for n in range(self.args.repeats):
            for key in dict.fromkeys(names.values()):  # each distinct driver once, in the names' order
                result = self.drive(key, n)
                shared = [name for name, k in names.items() if k == key]
                for name in shared:
                    rounds[name].append(result)
                print(
                    f"round {n + 1} {'='.join(shared)}: {result['tokens_per_s']:,.0f} tokens/s, "
                    f"{result['tokens_per_step']:.2f} tokens per engine step",
                    flush=True,
                )
        return rounds

    def drive(self, key: tuple[str, int], n: int) -> dict[str, float]:
        """One run of the driver `key` (kind, concurrency) in round `n`."""
        kind, concurrency = key
        if kind == "raw":
            return self.raw(concurrency)
        if kind == "streaming":
            return self.streaming(self.args.stream_interval)
        if kind == "pacore":
            return self.pacore(f"pacore-{n}")
        return self.pacore(f"before-{n}", PYTHONPATH=str(self.args.before.resolve()))

    def block_run(self) -> dict[str, Any]:
        """pacore with blocks of 256 tokens, so that trajectories continue in segments."""
        raw, pacore = self.raw(self.slots), self.pacore("block-256", PACORE_TOKEN_BLOCK="256")
        return {
            "raw@slots": raw,
            "pacore": pacore,
            "ratio_vs_raw_at_slots": pacore["tokens_per_s"] / raw["tokens_per_s"],
        }


def slots_arg(text: str) -> str:
    if text == "best" or (text.isdigit() and int(text) > 0):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: give a number of generations above 0, or best")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=160, help="runs long enough that the tail is small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repeat-p", type=float, default=0.998, help="the tiny model's reasoning length")
    parser.add_argument("--concurrencies", default="32,64,128", help="swept for the raw client")
    parser.add_argument("--intervals", default="32,64,128,256", help="swept for the streaming client")
    parser.add_argument("--sweep-problems", type=int, default=48, help="the sweep's runs take the first N")
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument("--stream-interval", type=int, default=DEFAULT_STREAM_INTERVAL)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--slots",
        type=slots_arg,
        default="best",
        help="pacore's generations in all (split over workers): a number, or best: raw's best concurrency "
        "from the sweep (64 with --no-sweep)",
    )
    parser.add_argument("--before", type=Path, help="a checkout of an earlier pacore to compare with")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-block-run", action="store_true")
    args = parser.parse_args()
    for name in ("problems", "repeats", "sweep_problems", "sweep_repeats", "stream_interval", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    if FLEET_CORES:  # this process and its children off the engine's core
        os.sched_setaffinity(0, {int(c) for c in range(int(FLEET_CORES.split("-")[0]), os.cpu_count() or 2)})
    root = Path(tempfile.mkdtemp(prefix="pacore-e2e-"))
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()[: args.problems]
    problems_path = root / "problems.jsonl"
    problems_path.write_text("\n".join(source) + "\n")
    sweep: dict[str, Any] = {}
    block: dict[str, Any] = {}
    try:
        with ExitStack() as stack:
            engine = VllmServer(root, args.repeat_p)
            stack.callback(engine.stop)
            engine.wait()
            bench = Bench(args, engine, root, problems_path)
            run_asyncio(engine.url, bench.problems[:4], 16)  # warm-up
            if not args.no_sweep:
                sweep = bench.sweep()
            rounds = bench.rounds()
            if not args.no_block_run:
                block = bench.block_run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(args, rounds, sweep, block, bench.best, bench.slots)


def report(
    args: argparse.Namespace,
    rounds: dict[str, list[dict[str, float]]],
    sweep: dict[str, Any],
    block_run: dict[str, Any],
    best: int,
    slots: int,
) -> None:
    median = {name: medians(runs) for name, runs in rounds.items()}
    print("\nCPU in µs per generated token: the client's, and the engine's by process")
    print(
        f"\n{'driver':<14} {'tokens/s':>10} {'seconds':>8} {'tokens/step':>12} {'steps/s':>8} "
        f"{'client CPU µs/token':>20} {'API server':>11} {'engine core':>12} {'model':>6}"
    )
    for name, m in median.items():
        print(
            f"{name:<14} {m['tokens_per_s']:>10,.0f} {m['seconds']:>8.1f} {m['tokens_per_step']:>12.2f} "
            f"{m['steps_per_s']:>8.1f} {m['client_cpu_us_per_token']:>20.1f} "
            f"{m['api_server_cpu_us_per_token']:>11.1f} {m['engine_core_cpu_us_per_token']:>12.1f} "
            f"{m['model_cpu_us_per_token']:>6.1f}"
        )
    ratios = {
        "ratio_vs_raw": ratio_stats(rounds["pacore"], rounds["raw"]),
        "ratio_vs_raw_at_slots": ratio_stats(rounds["pacore"], rounds["raw@slots"]),
        "ratio_vs_raw_streaming": ratio_stats(rounds["pacore"], rounds["streaming"]),
        "ratio_vs_reference": ratio_stats(rounds["pacore"], rounds["reference"]),
    }
    if "pacore_before" in rounds:
        ratios["before_ratio_vs_raw"] = ratio_stats(rounds["pacore_before"], rounds["raw"])
    # the same comparisons in generated tokens per engine step (how full each driver kept the engine's
    # batch): free of the engine's drift in speed, which tokens/s carries
    for name in ("raw", "raw_streaming", "reference"):
        driver = "streaming" if name == "raw_streaming" else name
        ratios[f"batch_ratio_vs_{name}"] = ratio_stats(rounds["pacore"], rounds[driver], "tokens_per_step")
    for name, r in ratios.items():
        print(f"{name:<30} {r['median']:.3f}  (min {r['min']:.3f}, max {r['max']:.3f})")
    ledger = [(r["ledger_tokens"], r["tokens"]) for r in rounds["pacore"]]
    print(f"pacore ledger vs engine tokens per round: {ledger}")
    if sweep.get("streaming"):
        print(
            "stream_interval sweep (streaming / raw@slots in tokens/s; the chunks' API-server CPU as a share "
            "of the engine's CPU per token): "
            + ", ".join(
                f"{i}: {v['ratio_vs_raw_at_slots']:.3f}, {v['chunk_cost_share']:.2%}"
                for i, v in sweep["streaming"].items()
            )
            + f"; suggested {sweep['suggested_stream_interval']}"
        )
    if block_run:
        p = block_run["pacore"]
        print(
            f"PACORE_TOKEN_BLOCK=256: {block_run['ratio_vs_raw_at_slots']:.3f}x raw@slots; continuation "
            f"prefill computed {p['prefill_computed']:,.0f} tokens, cache hits {p['prefill_cached']:,.0f}"
        )
    print(
        "RESULT "
        + json.dumps(
            {
                **ratios,
                "median": median,
                "raw_concurrency": best,
                "slots": slots,
                "stream_interval": args.stream_interval,
                "sweep": sweep,
                "block_256": block_run,
                "ledger_vs_engine": ledger,
                "repeats": args.repeats,
                "problems": args.problems,
                "repeat_p": args.repeat_p,
            }
        )
    )


if __name__ == "__main__":
    main()
