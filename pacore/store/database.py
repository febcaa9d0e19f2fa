"""The one door to PostgreSQL: URL resolution (configured or embedded), the connection pool and the
store's transactions, and schema migrations."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from pacore.settings import Settings
from pacore.store.base import Sent
from pacore.store.claims import Finished, Result
from pacore.store.store import Store

log = logging.getLogger("pacore.store")


class SchemaError(RuntimeError):
    """The database has no pacore schema, or an old one."""


class DatabaseUnreachable(RuntimeError):
    """PostgreSQL cannot be reached at the URL given (or the URL is not one): said in one line."""


def normalize_url(url: str) -> str:
    """Accept the usual `postgresql://` and `postgres://` spellings; pacore talks through psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def resolve_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return normalize_url(settings.database_url.get_secret_value())
    from pacore.store import embedded

    try:
        return embedded.start(settings.data_dir)
    except embedded.NotStarted as exc:
        raise DatabaseUnreachable(str(exc)) from exc


T = TypeVar("T")


def _session(conn: psycopg.Connection[object], idle_seconds: float | None, name: str | None) -> None:
    """A new connection's session settings (committed: they hold for the session, not one transaction)."""
    if idle_seconds is not None:
        idle = f"{max(1, round(idle_seconds * 1000))}ms"
        conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)", [idle])
    if name is not None:
        conn.execute("SELECT set_config('application_name', %s, false)", [name])
    conn.commit()


class Database:
    def __init__(
        self,
        url: str,
        pool_size: int = 5,
        outage_seconds: float = 120.0,
        pre_ping: bool = True,
        idle_in_transaction_seconds: float | None = None,
        application_name: str | None = None,
    ) -> None:
        """`pre_ping` tests each pooled connection with a round trip before use. Workers and schedulers
        turn it off: their transactions run `through_outages`, which retries one that fails on a
        dropped connection (each is idempotent), so the hot path pays no extra round trip.

        `idle_in_transaction_seconds` (schedulers and workers): PostgreSQL ends a session of this pool
        that sits that long inside a transaction, waiting for its client. A process frozen (SIGSTOP, a
        paused VM) or cut off mid-transaction would otherwise keep its row locks until it came back,
        and the reconciler, which must lock those rows to re-drive what the process held, would wait
        for it, re-driving nothing else meanwhile. The process, if it comes back, finds its connection
        closed: an outage, which its idempotent transactions run through. `application_name` names its
        sessions in `pg_stat_activity` (a fleet process: its role and pid)."""
        self.url = url
        self.outage_seconds = outage_seconds
        try:
            self.engine: Engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping
            )
        except (ArgumentError, ValueError) as exc:  # the URL is not one; its text may hold a password
            raise DatabaseUnreachable(
                f"PACORE_DATABASE_URL is not a PostgreSQL URL ({type(exc).__name__}): write it as "
                "postgresql://USER:PASSWORD@HOST:5432/DBNAME"
            ) from None
        if idle_in_transaction_seconds is not None or application_name is not None:
            idle, name = idle_in_transaction_seconds, application_name
            event.listen(self.engine, "connect", lambda conn, _: _session(conn, idle, name))
        self.sent = Sent()  # what its stores sent PostgreSQL

    @classmethod
    def from_settings(
        cls, settings: Settings, pool_size: int = 5, pre_ping: bool = True, fleet: str | None = None
    ) -> Database:
        """`fleet`: the role of a fleet process (scheduler, worker): its sessions are named
        `pacore-ROLE:PID` and ended when idle in a transaction (see `idle_in_transaction_seconds`)."""
        idle = settings.db_idle_in_transaction_seconds if fleet else None
        name = f"pacore-{fleet}:{os.getpid()}" if fleet else None
        return cls(resolve_url(settings), pool_size, settings.db_outage_seconds, pre_ping, idle, name)

    # What an unreachable PostgreSQL raises (a restart, a failover, a dropped connection): psycopg's own
    # in a store, SQLAlchemy's from the pool (a checkout that cannot connect).
    OUTAGES = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)

    def through_outages(self, fn: Callable[..., T], *args: object) -> T:
        """Call `fn` (one transaction), again while PostgreSQL cannot be reached (a restart, a failover),
        for up to `outage_seconds`. Only for transactions that are safe to run twice: a commit whose
        acknowledgement was lost is run again."""
        retrying = Retrying(
            retry=retry_if_exception_type(self.OUTAGES),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            stop=stop_after_delay(self.outage_seconds),
            reraise=True,
            before_sleep=self._waiting,
        )
        return retrying(fn, *args)

    def _waiting(self, state: object) -> None:
        attempt = getattr(state, "attempt_number", 0)
        if attempt in (1, 10) or attempt % 50 == 0:  # said, not repeated every backoff
            log.warning(
                "PostgreSQL cannot be reached; waiting for it (up to %d s in all, try %d)",
                self.outage_seconds,
                attempt,
            )

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The store on one transaction of a pooled connection: commits on success, rolls back on any
        exception."""
        with self._pooled() as conn, conn.transaction():
            yield Store(conn, self.sent)

    @contextmanager
    def statement(self) -> Iterator[Store]:
        """The store for work of one statement, which commits on its own (autocommit): no BEGIN and
        no COMMIT, two round trips of the three a transaction of one statement takes. A second
        statement is refused (it would not share the first's transaction): use `store()`."""
        with self._pooled() as conn:
            conn.autocommit = True
            try:
                yield Store(conn, self.sent, most=1)
            finally:
                if not (conn.broken or conn.closed):
                    conn.autocommit = False  # back to the pool as `store()` expects it

    @contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection[object]]:
        """A connection of the pool. One found broken is dropped from the pool, not handed out again."""
        pooled = self.engine.raw_connection()
        conn: psycopg.Connection[object] = pooled.driver_connection  # type: ignore[assignment]
        try:
            yield conn
        finally:
            if conn.broken or conn.closed:
                pooled.invalidate()
            pooled.close()  # back to the pool

    def run(self, fn: Callable[[Store], T]) -> T:
        """`fn` on the store of a transaction of its own (see worker.writes for one shared by many)."""
        with self.store() as store:
            return fn(store)

    def finish(self, result: Result) -> Finished:
        """An attempt's result, one statement committed on its own (worker.writes: many in one)."""
        with self.statement() as store:
            return store.finish_attempts([result])[0]

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------------------

    def alembic_config(self):  # type: ignore[no-untyped-def]
        from alembic.config import Config

        import migrations

        config = Config()
        config.set_main_option("script_location", str(Path(migrations.__file__).parent))
        config.attributes["url"] = self.url
        return config

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        command.upgrade(self.alembic_config(), revision)

    def downgrade(self, revision: str) -> None:
        from alembic import command

        command.downgrade(self.alembic_config(), revision)

    def current_revision(self) -> str | None:
        with self.store() as store:
            if not store.scalar("has_schema_version"):
                return None
            return store.scalar("schema_version")  # type: ignore[no-any-return]

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def shown(self) -> str:
        """Where this database is, for messages: its URL without the password."""
        return self.engine.url.render_as_string(hide_password=True).replace("+psycopg", "")

    def check(self, wait: bool = False) -> None:
        """One connection, at once (`wait`: through an outage, up to PACORE_DB_OUTAGE_SECONDS):
        DatabaseUnreachable in one line (where, why, what to do) if it fails."""
        try:
            self.through_outages(self._connect) if wait else self._connect()
        except (OperationalError, InterfaceError) as exc:
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
            raise DatabaseUnreachable(
                f"cannot reach PostgreSQL at {self.shown()} ({why}): is it running there, and is "
                "PACORE_DATABASE_URL right? (unset, pacore starts an embedded PostgreSQL in PACORE_DATA_DIR)"
            ) from None

    def _connect(self) -> None:
        with self.engine.connect():
            pass

    def require_schema(self) -> None:
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            state = "has no pacore schema" if current is None else f"is at schema {current}, not {head}"
            raise SchemaError(f"the database {state}: run `pacore db upgrade` first")
