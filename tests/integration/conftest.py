"""The fleet for integration tests: a scheduler and a worker as real `pacore` (Celery worker) processes,
on a session database and a private Redis database number, talking to a real HTTP engine (FakeEngine)."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from pacore.db import Database, normalize_url
from tests.conftest import pacore_env, pacore_executable
from tests.fake_engine import FakeEngine


@dataclass
class Fleet:
    database_url: str
    broker_url: str
    engine: FakeEngine
    logs: Path

    def env(self, **extra: str) -> dict[str, str]:
        return pacore_env(
            PACORE_DATABASE_URL=self.database_url,
            PACORE_BROKER_URL=self.broker_url,
            PACORE_DISPATCH_INTERVAL="0.3",
            **extra,
        )

    def pacore(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pacore_executable(), *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def submit(self, path: Path, *args: str) -> dict:
        result = self.pacore("submit", str(path), "--model", self.engine.model, "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_finished(self, name: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = json.loads(self.pacore("status", name, "--json").stdout)
            runs = status["runs"]
            if runs.get("pending", 0) + runs.get("running", 0) == 0:
                return status
            time.sleep(0.5)
        raise AssertionError(f"campaign {name} did not finish in {timeout} s: {status}; logs in {self.logs}")

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def fleet(postgres_admin: str, template_db: str, redis_available: str, tmp_path_factory) -> Iterator[Fleet]:
    name = f"pacore_fleet_{random.randrange(16**8):08x}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    database_url = postgres_admin.rsplit("/", 1)[0] + "/" + name
    broker = f"{redis_available}/{random.randrange(1, 16)}"
    redis.Redis.from_url(broker).flushdb()
    logs = tmp_path_factory.mktemp("fleet-logs")
    with FakeEngine() as engine:
        fleet = Fleet(database_url, broker, engine, logs)
        procs = [
            subprocess.Popen(
                [pacore_executable(), "scheduler"],
                env=fleet.env(),
                stdout=(logs / "scheduler.log").open("w"),
                stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [pacore_executable(), "worker", "--engine-url", engine.url, "--concurrency", "8"],
                env=fleet.env(),
                stdout=(logs / "worker.log").open("w"),
                stderr=subprocess.STDOUT,
            ),
        ]
        try:
            yield fleet
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    redis.Redis.from_url(broker).flushdb()
    Database(normalize_url(database_url)).dispose()
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
