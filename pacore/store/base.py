"""What every part of the store shares: running a named query on the store's session and building typed
rows from its columns (see `pacore.store.store.Store`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Result
from sqlalchemy.orm import Session

from pacore.store.queries import clause

T = TypeVar("T")


class StoreBase:
    def __init__(self, session: Session) -> None:
        self.session = session

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
