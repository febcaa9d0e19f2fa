"""The `pacore` command group: settings are built here, once, and passed down to the commands (one
module per command group in this package).

The control plane (`scheduler`) and the workers (`worker`) are imported inside the commands that need
them, so that `pacore submit` and `pacore status` need neither Celery workers nor an engine.
"""

from __future__ import annotations

import click
from pydantic import ValidationError

from pacore import logs
from pacore.settings import Settings
from pacore.store.database import Database, DatabaseUnreachable, SchemaError


class Context:
    """Per-invocation state: the settings, and the database once a command asks for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None

    def db(
        self,
        require_schema: bool = True,
        pool_size: int = 5,
        pre_ping: bool = True,
        wait: bool = False,
        fleet: str | None = None,
    ) -> Database:
        """`wait`: a long-running process (scheduler, worker) started while PostgreSQL restarts waits for
        it (up to PACORE_DB_OUTAGE_SECONDS, saying so) instead of exiting. `fleet`: the role of a
        scheduler or a worker, whose sessions are named for it and which PostgreSQL ends when they sit
        in a transaction for PACORE_DB_IDLE_IN_TRANSACTION_SECONDS (a frozen process must not hold the
        reconciler)."""
        if self._db is None:
            try:
                db = Database.from_settings(self.settings, pool_size, pre_ping, fleet)
                db.check(wait)
            except DatabaseUnreachable as exc:
                raise click.ClickException(str(exc)) from None
            self._db = db
        if require_schema:
            try:
                if wait:
                    self._db.through_outages(self._db.require_schema)
                else:
                    self._db.require_schema()
            except SchemaError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._db


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.version_option(package_name="pacore")
@click.pass_context
def main(ctx: click.Context) -> None:
    """pacore: PaCoRe test-time-compute campaigns on a job queue (see README.md)."""
    try:
        settings = Settings()
    except ValidationError as exc:  # named and explained, without the values: they may be secrets
        problems = "; ".join(
            f"PACORE_{'_'.join(map(str, e['loc'])).upper() or '*'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise click.ClickException(f"invalid setting: {problems}") from exc
    logs.configure(settings.log_level, settings.log_format)
    ctx.obj = Context(settings)
