"""What every part of the store shares: running a named query on the store's connection (one
transaction, opened by `Database.store()`) and building typed rows from its columns (see
`pacore.store.store.Store`).

The queries run on psycopg itself, not through SQLAlchemy's session: on the hot path (a claim, a result,
a round advance) the session's machinery cost about as much client CPU as psycopg's own work, ~0.1 ms per
statement and ~0.3 ms per transaction on this box (ops/SCALING.md). SQLAlchemy keeps the connection pool
and the migrations."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import psycopg
from psycopg.rows import kwargs_row

from pacore.store.queries import statement

T = TypeVar("T")


class StoreError(Exception):
    """A statement the database refused (a value out of range, a constraint): the work it belonged to
    cannot go on as it is. Raised by `StoreBase.isolated`, whose writes were rolled back."""


@dataclass
class Sent:
    """What a `Database` sent PostgreSQL through its stores: statements, and transactions that ran at
    least one (a statement committed on its own, `Database.statement`, opens none), for the
    statement-count test and benchmarks; plain counters, so threads that run stores at the same
    instant may lose an increment."""

    statements: int = 0
    transactions: int = 0


@cache
def _row_class(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names, rename=True)  # type: ignore[misc]  # two `count` columns: _1


def named_rows(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Any]:
    """Rows as named tuples of their columns (psycopg's `namedtuple_row` refuses a name used twice)."""
    names = tuple(column.name for column in cursor.description or ())
    return _row_class(names)._make  # type: ignore[no-any-return]


class StoreBase:
    def __init__(self, conn: psycopg.Connection[Any], sent: Sent, most: int | None = None) -> None:
        self.conn = conn
        self.sent = sent  # its Database's
        self.statements = 0  # in this store's transaction
        self.most = most  # statements it may run (`Database.statement`: 1, outside a transaction)

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """A savepoint: if the database refuses a statement inside, what was written inside is rolled
        back and StoreError raised, and the transaction goes on for the rest of its work. (A lost
        connection is not refused work: it propagates as it is, for the caller's retry.)"""
        try:
            with self.conn.transaction():  # inside the store's transaction: a savepoint
                yield
        except psycopg.Error as exc:
            if self.conn.broken or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise
            raise StoreError(str(exc).strip().splitlines()[0]) from exc

    def execute(
        self, name: str, params: dict[str, Any] | Sequence[dict[str, Any]] | None = None
    ) -> psycopg.Cursor[Any]:
        """Run named query `name` (a list of parameter sets runs it once per set); its rows are named
        tuples."""
        return self._run(name, params, named_rows)

    def _run(self, name: str, params: Any, rows: Any) -> psycopg.Cursor[Any]:
        if self.most is not None and self.statements >= self.most:
            raise RuntimeError(
                f"a store outside a transaction runs {self.most} statement(s): {name} is one more"
            )
        cursor = self.conn.cursor(row_factory=rows)
        self.statements += 1
        self.sent.statements += 1
        if self.statements == 1 and self.most is None:  # a store of one statement opens none
            self.sent.transactions += 1
        if isinstance(params, list | tuple):
            cursor.executemany(statement(name), params)
        else:
            cursor.execute(statement(name), params or {})
        return cursor

    def one(self, row: type[T], name: str, params: dict[str, Any] | None = None) -> T | None:
        """The first row of `name` as a `row`, built from its column names; None when there is none."""
        return self._run(name, params, kwargs_row(row)).fetchone()  # type: ignore[no-any-return]

    def all(self, row: type[T], name: str, params: dict[str, Any] | None = None) -> list[T]:
        return self._run(name, params, kwargs_row(row)).fetchall()

    def scalar(self, name: str, params: dict[str, Any] | None = None) -> Any:
        found = self.execute(name, params).fetchone()
        return None if found is None else found[0]

    def scalars(self, name: str, params: dict[str, Any] | None = None) -> list[Any]:
        return [found[0] for found in self.execute(name, params)]

    def count(self, name: str, params: dict[str, Any] | None = None) -> int:
        """The rows a write changed."""
        return self.execute(name, params).rowcount
