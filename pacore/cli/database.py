"""`pacore db`: the schema's migrations."""

from __future__ import annotations

import click

from pacore.cli.app import Context, main, pass_ctx

# -- db ---------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(obj: Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    database = obj.db(require_schema=False)
    database.upgrade(revision)
    click.echo(f"database schema at {database.current_revision()}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(obj: Context, revision: str) -> None:
    """Revert migrations down to REVISION (`base` removes everything)."""
    database = obj.db(require_schema=False)
    database.downgrade(revision)
    click.echo(f"database schema at {database.current_revision() or 'base'}")


@db.command("current")
@pass_ctx
def db_current(obj: Context) -> None:
    """Print the schema revision of the database."""
    click.echo(obj.db(require_schema=False).current_revision() or "base (no schema: run `pacore db upgrade`)")
