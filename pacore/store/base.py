"""What every part of the store shares: running a named query on the store's session and building typed
rows from its columns (see `pacore.store.store.Store`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from pacore.store.queries import clause

T = TypeVar("T")


class StoreError(Exception):
    """A statement the database refused (a value out of range, a constraint): the work it belonged to
    cannot go on as it is. Raised by `StoreBase.isolated`, whose writes were rolled back."""


class StoreBase:
    def __init__(self, session: Session) -> None:
        self.session = session

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """A savepoint: if the database refuses a statement inside, what was written inside is rolled
        back and StoreError raised, and the transaction goes on for the rest of its work. (A lost
        connection is not refused work: it propagates as it is, for the caller's retry.)"""
        try:
            with self.session.begin_nested():
                yield
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            raise StoreError(str(exc.orig).strip().splitlines()[0]) from exc

    def execute(
        self, name: str, params: dict[str, Any] | Sequence[dict[str, Any]] | None = None
    ) -> Result[Any]:
        """Run named query `name` (a list of parameter sets runs it once per set)."""
        return self.session.execute(clause(name), params or {})

    def one(self, row: type[T], name: str, params: dict[str, Any] | None = None) -> T | None:
        """The first row of `name` as a `row`, built from its column names; None when there is none."""
        found = self.execute(name, params).mappings().first()
        return None if found is None else row(**found)

    def all(self, row: type[T], name: str, params: dict[str, Any] | None = None) -> list[T]:
        return [row(**found) for found in self.execute(name, params).mappings()]

    def scalar(self, name: str, params: dict[str, Any] | None = None) -> Any:
        return self.execute(name, params).scalar()

    def scalars(self, name: str, params: dict[str, Any] | None = None) -> list[Any]:
        return list(self.execute(name, params).scalars())

    def count(self, name: str, params: dict[str, Any] | None = None) -> int:
        """The rows a write changed."""
        result = self.execute(name, params)
        assert isinstance(result, CursorResult)
        return int(result.rowcount)
