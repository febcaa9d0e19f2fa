"""Alembic environment: the URL comes from pacore's settings (or the caller), metadata from the models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import pacore.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Only pacore's own tables: Celery's result tables and kombu's queue tables share the database."""
    return type_ != "table" or name in target_metadata.tables


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return url
    from pacore.settings import Settings
    from pacore.store.database import resolve_url

    return resolve_url(Settings())


# Two `pacore db upgrade` (or first commands) at once: the second waits for the first's transaction, then
# finds the schema where the first left it. The key is pacore's own (the bytes of "pacore" as an integer).
MIGRATION_LOCK = int.from_bytes(b"pacore", "big")


def _migrate(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, include_name=_include_name)
    with context.begin_transaction():
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")  # type: ignore[attr-defined]
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _migrate(connectable)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _migrate(connection)
    engine.dispose()


run_migrations_online()
