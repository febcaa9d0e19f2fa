"""A fleet for tests: a scheduler and workers as real `pacore` (Celery worker) processes on a private
database (cloned from the migrated template) and a private Redis database number."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from tests.conftest import pacore_env, pacore_executable


@dataclass
class Fleet:
    database_url: str
    broker_url: str
    engine_url: str
    model: str
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    engine_ref: Any = None  # the FakeEngine in the test process, when there is one
    database_url_file: Path | None = None  # given, processes read the URL from it, not the environment

    def env(self, **extra: str) -> dict[str, str]:
        url_file = str(self.database_url_file) if self.database_url_file else None
        defaults = {
            "PACORE_DISPATCH_INTERVAL": "0.3",
            "PACORE_ENGINE_TIMEOUT": "2",
            "PACORE_ENGINE_RETRIES": "4",
            "PACORE_ENGINE_RETRY_INITIAL": "0.05",
            # chunks of several tokens, as in production, yet several per scripted generation (tens of
            # tokens), so that checkpoints, cancels and drains still land mid-stream
            "PACORE_STREAM_INTERVAL": "4",
        }
        return pacore_env(
            PACORE_DATABASE_URL=None if url_file else self.database_url,
            PACORE_DATABASE_URL_FILE=url_file,
            PACORE_BROKER_URL=self.broker_url,
            **{**defaults, **self.extra_env, **extra},
        )

    def pacore(
        self, *args: str, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pacore_executable(), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )

    def start(self, label: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{label}.log").open("ab")
        proc = subprocess.Popen(
            [pacore_executable(), *args],
            env={**self.env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def submit(self, path: Path, *args: str) -> dict:
        result = self.pacore("submit", str(path), "--model", self.model, "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_finished(self, name: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = json.loads(self.pacore("status", name, "--json").stdout)
            runs = status["runs"]
            if runs.get("pending", 0) + runs.get("running", 0) == 0:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"campaign {name} did not finish in {timeout} s: {status}; logs in {self.logs}"
                )
            time.sleep(0.5)

    def until(self, sql: str, *params: object, timeout: float = 60) -> None:
        """Wait until the first column of `sql`'s first row is true (a condition, polled)."""
        deadline = time.monotonic() + timeout
        while not self.query(sql, *params)[0][0]:
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for: {sql}"
            time.sleep(0.1)

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.database_url) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def assert_within_budget(self, status: dict) -> None:
        """Every run ended with a reason and inside its budget, nothing is left reserved, the campaign is
        inside its budget, and the attempt ledger agrees with the counters."""
        runs = self.query(
            "SELECT status, reason, tokens_used, token_limit, tokens_reserved FROM run WHERE campaign_id = %s",
            status["id"],
        )
        ended = ("done", "no_conclusion", "failed", "budget_exhausted")
        assert all(s in ended and reason for s, reason, *_ in runs), runs
        assert all(
            reserved == 0 and (limit is None or used <= limit) for *_, used, limit, reserved in runs
        ), runs
        tokens = status["tokens"]
        if tokens["campaign_budget"] is not None:
            assert tokens["used"] + tokens["reserved"] <= tokens["campaign_budget"]
        settled = self.query(
            "SELECT coalesce(sum(a.completion_tokens), 0) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
            "WHERE t.campaign_id = %s",
            status["id"],
        )[0][0]
        assert settled == tokens["used"], "the ledger and the counters agree"

    def what_happened(self, campaign_id: int) -> str:
        """For an assertion's message: the campaign's attempt ledger by outcome, and what the processes
        logged at WARNING or above (a late heartbeat, a re-drive, a discarded late result)."""
        ledger = self.query(
            "SELECT a.outcome, a.error, count(*), sum(a.completion_tokens), sum(a.wasted_tokens) FROM attempt a "
            "JOIN trajectory t ON t.id = a.trajectory_id WHERE t.campaign_id = %s GROUP BY 1, 2 ORDER BY 3 DESC",
            campaign_id,
        )
        said = [
            f"{log.name}: {line}"
            for log in sorted(self.logs.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line or "Redrive" in line
        ]
        return f"ledger (outcome, error, attempts, tokens, wasted): {ledger}; logged: {said[:40]}"

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


OWNER_KEY = "pacore-test:owner"  # "host:pid" of the test process whose fleet uses the database


def claim_redis_db(redis_url: str, numbers: list[int] | None = None) -> str:
    """An empty Redis database number nobody else is using, marked as ours. Two fleets on one broker
    database would eat each other's messages (a worker drops a message for a row its database lacks).
    A database whose owner is a process of this host that no longer runs (a test run killed before its
    fleet's teardown) is emptied and taken, in one transaction that fails if anyone else touched the mark
    meanwhile. `numbers`: the database numbers to try, in order (default 1-15, shuffled)."""
    if numbers is None:
        numbers = list(range(1, 16))
        random.shuffle(numbers)
    me = f"{socket.gethostname()}:{os.getpid()}"
    for n in numbers:
        client = redis.Redis.from_url(f"{redis_url}/{n}")
        if _reclaim(client, me):
            return f"{redis_url}/{n}"
        if client.set(OWNER_KEY, me, nx=True):
            if client.dbsize() == 1:
                return f"{redis_url}/{n}"
            client.delete(OWNER_KEY)
    raise RuntimeError(f"no empty Redis database left at {redis_url}")


def _reclaim(client: redis.Redis, me: str) -> bool:
    """Take the database if its owner is a dead process of this host; False if it is not, or if the mark
    changed before the take."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(OWNER_KEY)
            owner = pipe.get(OWNER_KEY)
            if owner is None or not _dead_here(owner.decode()):
                return False
            pipe.multi()
            pipe.flushdb()
            pipe.set(OWNER_KEY, me)
            pipe.execute()
            return True
        except redis.WatchError:  # another test process took or released it meanwhile
            return False


def _dead_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():  # another host's, or a mark without its host
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Wait for a condition of the test process itself (the database has `Fleet.until`)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def running_fleet(
    postgres_admin: str,
    template_db: str,
    redis_url: str,
    engine_url: str,
    model: str,
    logs: Path,
    workers: int = 1,
    concurrency: int = 8,
    extra_env: dict[str, str] | None = None,
    password: str | None = None,
    database_url_file: Path | None = None,
) -> Iterator[Fleet]:
    """`password` goes into the database URL (trust authentication ignores it); with
    `database_url_file`, the processes read that URL from the file."""
    name = f"pacore_fleet_{random.randrange(16**8):08x}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    broker = claim_redis_db(redis_url)
    url = postgres_admin.rsplit("/", 1)[0] + "/" + name
    if password:
        url = url.replace("@", f":{password}@", 1)
    if database_url_file:
        database_url_file.write_text(url + "\n")
    fleet = Fleet(
        url, broker, engine_url, model, logs, extra_env=extra_env or {}, database_url_file=database_url_file
    )
    fleet.start("scheduler", "scheduler")
    for i in range(workers):
        fleet.start(
            f"worker-{i}",
            "worker",
            "--engine-url",
            engine_url,
            "--model",
            model,
            "--concurrency",
            str(concurrency),
        )
    try:
        yield fleet
    finally:
        fleet.stop()
        redis.Redis.from_url(broker).flushdb()
        with psycopg.connect(postgres_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
