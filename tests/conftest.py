"""Shared fixtures. Services are real: PostgreSQL, Redis, `celery worker` processes, the `pacore` CLI.

A missing service skips a test locally and fails it under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ADMIN_URL = os.environ.get("PACORE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PACORE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI") == "true"


def unavailable(what: str) -> None:
    """Skip locally, fail in CI: a CI run that silently skips its integration tests proves nothing."""
    if IN_CI:
        pytest.fail(f"{what} is not available (CI=true requires it)")
    pytest.skip(f"{what} is not available")


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        unavailable(f"shared data file {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError:
        unavailable(f"PostgreSQL at {ADMIN_URL}")
    return ADMIN_URL


@pytest.fixture(scope="session")
def template_db(postgres_admin: str) -> Iterator[str]:
    """A database migrated once per session; each test clones it (fast, fully isolated)."""
    from pacore.store.database import Database, normalize_url

    name = f"pacore_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(normalize_url(_with_db(postgres_admin, name)))
    db.upgrade()
    db.dispose()
    yield name
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_database(postgres_admin: str, template_db: str) -> Iterator[Callable[..., str]]:
    """Factory: a fresh database (migrated unless empty=True); returns its URL. Dropped after the test."""
    created: list[str] = []

    def make(empty: bool = False) -> str:
        name = f"pacore_t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(postgres_admin, autocommit=True) as conn:
            template = "" if empty else f' TEMPLATE "{template_db}"'
            conn.execute(f'CREATE DATABASE "{name}"{template}')
        created.append(name)
        return _with_db(postgres_admin, name)

    yield make
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(make_database: Callable[..., str]) -> str:
    return make_database()


@pytest.fixture
def database(database_url: str) -> Iterator[object]:
    from pacore.store.database import Database, normalize_url

    db = Database(normalize_url(database_url))
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def redis_available() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.exceptions.ConnectionError:
        unavailable(f"Redis at {REDIS_URL}")
    return REDIS_URL


def pacore_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a `pacore` subprocess: no PACORE_* from outside unless given here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACORE_")}
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def pacore_executable() -> str:
    found = shutil.which("pacore", path=str(Path(sys.executable).parent))
    assert found, "the pacore console script is not installed next to this Python"
    return found


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `pacore` command against this test's database."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        full_env = pacore_env(PACORE_DATABASE_URL=database_url, PACORE_DATA_DIR=str(tmp_path / "home"))
        full_env.update(env or {})
        return subprocess.run(
            [pacore_executable(), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )

    return run
