"""Benchmark: round affinity. Does a round's synthesis prompt get prefilled once, not once per engine?

    .venv/bin/python ops/bench/affinity.py [--problems 3] [--ks 8,16]

Two CPU vLLM servers (the tiny scripted model, prefix caching on), one `pacore worker` on each, one
`pacore scheduler`, private PostgreSQL and Redis. For each K and each setting, problems run one at a
time, each a campaign of `--rounds K,K`: round 2's K requests share one synthesis prompt (and so does the
final round's one). Affinity on: PACORE_BATCH_SIZE=16 (a round of K <= 16 is one message, taken by one
worker, so its K requests meet in one engine's prefix cache); off: PACORE_BATCH_SIZE=1 (each request goes
to whichever worker takes its message). Every problem is used once, so no prompt is in a cache from an
earlier run; each is restated to about `--words` words, so that prompts are long against vLLM's block
(the last partial block of every request is computed by each). The tiny model is built with long
conclusions (`--conclusion-p`: mean 1/(1-p) tokens after `</think>`, 100 by default), so that a
synthesis prompt is mostly its K references, as at the paper's scale, not the problem that round 1
already put in a cache.

The prefill the engines computed for rounds >= 2 is the delta of `local_compute` in
`vllm:prompt_tokens_by_source_total`, summed over both engines, from the moment the run's round 2 was
claimed (read from a sampler of both /metrics every 20 ms: round 1's prompts were prefilled long before,
at its start) to the end of the campaign. One copy of each round's prompt is the prompt tokens the engine
reported for one request of that round. `prefill_copies` = computed / one copy each, summed over the
runs; target <= 1.5 with affinity on, at K = 8 and 16. Prints a table and `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from chaos import REPO, free_port  # noqa: E402
from end_to_end import engine_counters  # noqa: E402
from round_hop import private_fleet  # noqa: E402

from pacore.campaigns.submit import submit  # noqa: E402
from pacore.core.campaign import CampaignConfig  # noqa: E402
from pacore.store.database import Database  # noqa: E402

MODEL = "tiny-qwen3"


def model_env(conclusion_p: float) -> dict[str, str]:
    """The tiny model whose conclusions are long (`--conclusion-repeat-p`), built once before the two
    engines start (each engine's serve.sh would otherwise build it at the same time)."""
    args = f"--repeat-p 0.9 --conclusion-repeat-p {conclusion_p}"
    env = {
        **os.environ,
        "PACORE_TINY_MODEL": str(Path.home() / ".cache" / "pacore" / f"tiny-qwen3-p0.9-c{conclusion_p}"),
        "PACORE_TINY_MODEL_ARGS": args,
    }
    subprocess.run(["bash", str(REPO / "ops/engine/bootstrap.sh")], env=env, check=True, capture_output=True)
    return env


def start_engine(root: Path, stack: ExitStack, name: str, core: str, env: dict[str, str]) -> str:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", core, "bash", str(REPO / "ops/engine/serve.sh"), str(port)],
        stdout=(root / f"{name}.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    stack.callback(lambda: os.killpg(proc.pid, 9))
    return f"http://127.0.0.1:{port}"


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the vLLM server at {url} did not become healthy")


class Sampler:
    """Both engines' computed prefill, every 20 ms, with the wall time of each reading."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.samples = [(time.time(), self.read())]
        self.stop = threading.Event()
        threading.Thread(target=self.loop, daemon=True).start()

    def read(self) -> float:
        return sum(engine_counters(u)["local_compute"] for u in self.urls)

    def loop(self) -> None:
        while not self.stop.wait(0.02):
            at = time.time()
            self.samples.append((at, self.read()))

    def before(self, at: float) -> float:
        return [v for t, v in self.samples if t < at][-1]


def problems(n: int, words: int) -> list[dict]:
    """MATH-500 problems, each restated until it is about `words` words long: at the paper's scale a
    synthesis prompt is tens of thousands of tokens, and a short one measures vLLM's last partial
    block (computed by every request) more than sharing."""
    source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
    out = []
    for line in source[:n]:
        record = json.loads(line)
        message = record["messages"][-1]
        times = max(1, words // max(1, len(message["content"].split())))
        message["content"] = "\n\n".join([message["content"]] * times)
        out.append(record)
    return out


def one_run(db: Database, url: str, root: Path, sampler: Sampler, name: str, problem: dict, k: int) -> dict:
    path = root / f"{name}.jsonl"
    path.write_text(json.dumps(problem) + "\n")
    submit(db, path, name, CampaignConfig(rounds=[k, k], model=MODEL))
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 600
        while conn.execute("SELECT status FROM campaign WHERE name = %s", (name,)).fetchone()[0] != "done":
            if time.monotonic() > deadline:
                raise SystemExit(f"campaign {name} did not finish in 10 minutes")
            time.sleep(0.1)
        end = sampler.read()
        rows = conn.execute(
            "SELECT r.index, min(extract(epoch FROM t.started_at)), max(t.prompt_tokens), "
            "count(DISTINCT t.worker_id) FROM round r JOIN run ON run.id = r.run_id "
            "JOIN campaign c ON c.id = run.campaign_id JOIN trajectory t ON t.round_id = r.id "
            "WHERE c.name = %s GROUP BY r.index ORDER BY r.index",
            (name,),
        ).fetchall()
    round2 = float(rows[1][1])
    return {
        "computed": end - sampler.before(round2),
        "one_copy": sum(int(p) for index, _, p, _ in rows if index >= 2),
        "workers_round2": int(rows[1][3]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=3, help="runs per K and setting")
    parser.add_argument("--ks", default="8,16")
    parser.add_argument("--words", type=int, default=0, help="restate each problem to about this many words")
    parser.add_argument(
        "--conclusion-p",
        type=float,
        default=0.99,
        help="the tiny model's conclusions: mean 1/(1-p) filler words after </think> (0: a dozen tokens)",
    )
    args = parser.parse_args()
    if not 0 <= args.conclusion_p < 1:
        parser.error(f"--conclusion-p must be at least 0 and below 1, not {args.conclusion_p}")
    ks = [int(k) for k in args.ks.split(",")]
    root = Path(tempfile.mkdtemp(prefix="pacore-affinity-"))
    figures: dict[str, dict] = {}
    pool = iter(problems(args.problems * len(ks) * 2, args.words))
    try:
        with ExitStack() as stack:
            env = model_env(args.conclusion_p)
            engines = [
                start_engine(root, stack, f"vllm-{i}", str(i % (os.cpu_count() or 1)), env) for i in range(2)
            ]
            for url in engines:
                wait_healthy(url)
            fleet = private_fleet(stack, root, engines[0], 16)
            fleet.env["PACORE_BATCH_SIZE"] = "16"
            for url in engines:
                fleet.engine_url = url
                fleet.start_worker()
            db_url = fleet.env["PACORE_DATABASE_URL"]
            db = Database(db_url)
            stack.callback(db.dispose)
            sampler = Sampler(engines)
            stack.callback(sampler.stop.set)
            for k in ks:
                for setting, batch in (("on", "16"), ("off", "1")):
                    fleet.env["PACORE_BATCH_SIZE"] = batch  # the scheduler splits rounds
                    for proc in fleet.others:
                        proc.terminate()
                        proc.wait(30)
                    fleet.others.clear()
                    fleet.start_scheduler()
                    runs = [
                        one_run(db, db_url, root, sampler, f"k{k}-{setting}-{i}", next(pool), k)
                        for i in range(args.problems)
                    ]
                    computed = sum(r["computed"] for r in runs)
                    copy = sum(r["one_copy"] for r in runs)
                    figures[f"k{k}_{setting}"] = {
                        "computed": computed,
                        "one_copy": copy,
                        "prefill_copies": computed / copy,
                        "round2_workers": [r["workers_round2"] for r in runs],
                    }
                    print(f"K={k} affinity {setting}: {figures[f'k{k}_{setting}']}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{'K':<4} {'affinity':<9} {'computed':>10} {'one copy':>10} {'copies':>8}  round-2 workers per run"
    )
    for key, f in figures.items():
        k, setting = key.split("_")
        print(
            f"{k[1:]:<4} {setting:<9} {f['computed']:>10,.0f} {f['one_copy']:>10,} "
            f"{f['prefill_copies']:>8.2f}  {f['round2_workers']}"
        )
    result: dict[str, object] = {}
    for k in ks:
        result[f"prefill_copies_k{k}"] = round(figures[f"k{k}_on"]["prefill_copies"], 3)
        result[f"prefill_copies_k{k}_affinity_off"] = round(figures[f"k{k}_off"]["prefill_copies"], 3)
    result["target_met"] = all(figures[f"k{k}_on"]["prefill_copies"] <= 1.5 for k in ks)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
