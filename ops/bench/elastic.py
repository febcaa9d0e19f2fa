"""Benchmark: an elastic fleet through demand that rises and falls (issue #17).

    .venv/bin/python ops/bench/elastic.py [--problems 24] [--gap 120] [--max 4] [--per-worker 8] [--plot FILE]

The CPU vLLM (the tiny scripted Qwen3, pinned to its own core), a private PostgreSQL and Redis, one
`pacore scheduler` and `pacore fleet autoscale` (pinned to the other cores) with no worker at the start.
Campaign A (MATH-500 problems, preset low) is submitted at once and campaign B `--gap` seconds later, so
the fleet scales out for A, back in (by drain) once A's demand falls, and out again for B. The benchmark
samples, every second, the demand (view `fleet_demand`, what the autoscaler and KEDA read), the live
workers (registered, heartbeat fresh) and the idle ones (live, generating nothing). The sampler is one
query a second in this process: this benchmark measures scaling, not tokens/s.

Prints workers and demand over time, the time to scale out after each submit (to the workers the demand
at that moment wants), idle worker-seconds, what scale-in cut (attempts handed back by a drain and their
tokens regenerated) and writes a PNG of workers vs demand. `RESULT {json}` carries `lost`,
`double_counted`, `max_workers`, `final_workers`, `cut_by_scale_in`, `regenerated_by_scale_in`,
`scale_out_seconds` (the slower of the two rises), `idle_worker_seconds`, and the series.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
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
from chaos import FLEET_CORES, PACORE, REPO, VllmServer, pin, wait_for  # noqa: E402
from round_hop import private_fleet  # noqa: E402

ENDED = ("done", "no_conclusion")
SAMPLE = (
    "SELECT (SELECT coalesce(sum(slots), 0) FROM fleet_demand WHERE model = %(model)s), "
    "(SELECT count(*) FROM worker WHERE status = 'up' AND heartbeat_at > now() - interval '60 seconds'), "
    "(SELECT count(*) FROM worker w WHERE status = 'up' AND heartbeat_at > now() - interval '60 seconds' "
    " AND NOT EXISTS (SELECT 1 FROM trajectory t WHERE t.worker_id = w.id AND t.status = 'running')), "
    "(SELECT count(*) FROM trajectory WHERE status = 'running')"
)


class Sampler(threading.Thread):
    def __init__(self, url: str, model: str) -> None:
        super().__init__(daemon=True)
        self.url, self.model = url, model
        self.samples: list[tuple[float, int, int, int, int]] = []  # (t, demand, live, idle, running)
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                self.sample(conn)
                if self.stop.wait(1.0):
                    self.sample(conn)  # the last: the fleet as the benchmark ends
                    return

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(SAMPLE, {"model": self.model}).fetchone()
        assert row is not None
        self.samples.append((round(time.monotonic() - self.t0, 1), *map(int, row)))

    def now(self) -> float:
        return time.monotonic() - self.t0


def problems(root: Path, name: str, start: int, n: int) -> Path:
    lines = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()[start : start + n]
    path = root / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def scale_out_seconds(
    samples: list[tuple[float, int, int, int, int]], t0: float, per: int, most: int
) -> float:
    """From a submit to the first sample with as many live workers as the demand then wanted."""
    after = [s for s in samples if s[0] >= t0 and s[1] > 0]
    if not after:
        raise SystemExit(f"no demand was seen after the submit at {t0:.0f}s")
    wanted = min(most, math.ceil(after[0][1] / per))
    reached = next((t for t, _, live, _, _ in after if live >= wanted), None)
    if reached is None:
        raise SystemExit(f"the fleet never reached {wanted} workers after the submit at {t0:.0f}s")
    return round(reached - t0, 1)


def figures(url: str, names: list[str]) -> dict[str, Any]:
    with psycopg.connect(url) as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql, {"names": names}).fetchone()
            assert row is not None
            return row[0]

        mine = "t.campaign_id IN (SELECT id FROM campaign WHERE name = ANY(%(names)s))"
        return {
            "runs": one(
                "SELECT count(*) FROM run WHERE campaign_id IN (SELECT id FROM campaign WHERE name = ANY(%(names)s))"
            ),
            "lost": one(
                "SELECT count(*) FROM run WHERE campaign_id IN (SELECT id FROM campaign WHERE name = ANY(%(names)s)) "
                f"AND status NOT IN {ENDED}"
            ),
            "double_counted": one(
                "SELECT count(*) FROM (SELECT a.trajectory_id FROM attempt a JOIN trajectory t ON t.id = "
                f"a.trajectory_id WHERE {mine} AND a.outcome = 'done' GROUP BY 1 HAVING count(*) > 1) x"
            )
            + one(
                "SELECT count(*) FROM campaign c WHERE name = ANY(%(names)s) AND tokens_used <> (SELECT "
                "coalesce(sum(a.completion_tokens), 0) FROM attempt a JOIN trajectory t ON t.id = "
                "a.trajectory_id WHERE t.campaign_id = c.id)"
            ),
            "cut_by_scale_in": one(
                "SELECT count(*) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
                f"WHERE {mine} AND a.error LIKE 'handed back: drained%%'"
            ),
            "regenerated_by_scale_in": int(
                one(
                    "SELECT coalesce(sum(a.wasted_tokens), 0) FROM attempt a JOIN trajectory t ON "
                    f"t.id = a.trajectory_id WHERE {mine} AND a.error LIKE 'handed back: drained%%'"
                )
            ),
            "tokens_used": int(one("SELECT sum(tokens_used) FROM campaign WHERE name = ANY(%(names)s)")),
        }


def plot(
    samples: list[tuple[float, int, int, int, int]], per: int, most: int, submits: list[float], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] for s in samples]
    fig, ax = plt.subplots(figsize=(9, 4))
    wanted = [min(most, math.ceil(s[1] / per)) for s in samples]
    ax.step(t, wanted, where="post", label=f"wanted now: ceil(demand / {per}), at most {most}")
    ax.step(t, [s[2] for s in samples], where="post", label="live workers")
    ax.step(t, [s[3] for s in samples], where="post", label="idle workers", alpha=0.6)
    for at, name in zip(submits, "AB", strict=False):
        ax.axvline(at, color="grey", linestyle=":")
        ax.text(at, ax.get_ylim()[1] * 0.95, f" submit {name}", color="grey")
    ax.set_xlabel("seconds")
    ax.set_ylabel("workers")
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=24, help="problems of each campaign")
    parser.add_argument("--gap", type=float, default=120, help="seconds between the two submits")
    parser.add_argument("--max", type=int, default=4, help="the autoscaler's --max")
    parser.add_argument("--per-worker", type=int, default=8, help="the autoscaler's --per-worker")
    parser.add_argument("--cooldown", type=float, default=20, help="the autoscaler's --cooldown")
    parser.add_argument("--repeat-p", type=float, default=0.998, help="reasoning length: mean 1/(1-p) tokens")
    parser.add_argument("--plot", type=Path, default=Path("elastic.png"), help="the PNG to write")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    root = Path(tempfile.mkdtemp(prefix="pacore-elastic-"))
    try:
        with ExitStack() as stack:
            result = run(args, root, stack)
    finally:
        if args.keep:
            print(f"logs in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("RESULT " + json.dumps(result))


def run(args: argparse.Namespace, root: Path, stack: ExitStack) -> dict[str, Any]:
    engine = VllmServer(root, args.repeat_p)
    stack.callback(engine.stop)
    fleet = private_fleet(stack, root, engine.url, args.per_worker, FLEET_CORES)
    engine.wait()
    model = httpx.get(f"{engine.url}/v1/models", timeout=10).json()["data"][0]["id"]
    fleet.start_scheduler()
    url = fleet.env["PACORE_DATABASE_URL"]
    autoscaler = subprocess.Popen(
        [
            *pin(FLEET_CORES),
            PACORE,
            "fleet",
            "autoscale",
            *("--model", model, "--engine-url", engine.url, "--min", "0", "--max", str(args.max)),
            *("--per-worker", str(args.per_worker), "--cooldown", str(args.cooldown), "--interval", "1"),
            *("--log-dir", str(root / "workers")),
        ],
        env=fleet.env,
        stdout=(root / "autoscaler.log").open("ab"),
        stderr=subprocess.STDOUT,
    )

    def stop_autoscaler() -> None:
        if autoscaler.poll() is None:
            autoscaler.terminate()
            autoscaler.wait(120)

    stack.callback(stop_autoscaler)
    sampler = Sampler(url, model)
    sampler.start()
    deadline = time.monotonic() + args.timeout
    submits = []
    for i, name in enumerate(("A", "B")):
        if i:
            while sampler.now() < submits[0] + args.gap:
                time.sleep(0.5)
        submits.append(round(sampler.now(), 1))
        fleet.run(
            "submit",
            str(problems(root, name, i * args.problems, args.problems)),
            "--model",
            model,
            "--name",
            name,
        )
        print(f"{submits[-1]:7.1f}s submitted {name}: {args.problems} problems, preset low", flush=True)

    def ended() -> bool:
        if time.monotonic() > deadline:
            raise SystemExit("the campaigns did not end in time")
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'done'), (SELECT count(*) FROM worker WHERE status = 'up') "
                "FROM campaign"
            ).fetchone()
        return row == (2, 0)

    wait_for(ended, "both campaigns to end and the fleet to scale back to 0", args.timeout)
    sampler.stop.set()
    sampler.join()
    stop_autoscaler()
    samples = sampler.samples
    out = figures(url, ["A", "B"])
    rises = [scale_out_seconds(samples, t0, args.per_worker, args.max) for t0 in submits]
    dt = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    out.update(
        max_workers=max(s[2] for s in samples),
        final_workers=samples[-1][2],
        scale_out_seconds=max(rises),
        scale_out_seconds_each=rises,
        idle_worker_seconds=round(sum(d * s[3] for d, s in zip(dt, samples, strict=False)), 1),
        worker_seconds=round(sum(d * s[2] for d, s in zip(dt, samples, strict=False)), 1),
        workers_started=(root / "autoscaler.log").read_text().count("started worker"),
        workers_drained=(root / "autoscaler.log").read_text().count("exit code 0"),
        autoscaler_exit=autoscaler.returncode,
        settings={
            k: getattr(args, k) for k in ("problems", "gap", "max", "per_worker", "cooldown", "repeat_p")
        },
        submits=submits,
        series=samples,
    )
    plot(samples, args.per_worker, args.max, submits, args.plot)
    print(f"{'t s':>7} {'demand':>7} {'live':>5} {'idle':>5} {'running':>8}")
    last = None
    for t, demand, live, idle, running in samples:
        if (demand, live, idle) != last:
            print(f"{t:7.1f} {demand:7d} {live:5d} {idle:5d} {running:8d}")
            last = (demand, live, idle)
    print(
        f"scale out: {rises} s after each submit; idle {out['idle_worker_seconds']} of "
        f"{out['worker_seconds']} worker-seconds; max {out['max_workers']} workers, final {out['final_workers']}; "
        f"lost {out['lost']}, double-counted {out['double_counted']}; cut by scale-in {out['cut_by_scale_in']} "
        f"({out['regenerated_by_scale_in']} tokens regenerated); plot {args.plot}"
    )
    return out


if __name__ == "__main__":
    main()
