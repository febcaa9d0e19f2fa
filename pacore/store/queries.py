"""Named queries: every SQL statement pacore runs lives in `sql/*.sql` (one file per domain), each
headed by its name and a one-line purpose, as procrastinate's `queries.sql`:

    -- name: claim_trajectory
    -- A worker claims a pending trajectory, fenced by its attempt, and reads what its request needs.
    UPDATE trajectory ...;

Only `Store` runs them, through psycopg. Parameters are written `:name` (readable, as SQLAlchemy's
binds) and sent as psycopg's `%(name)s`: `Query.psycopg` is the statement in that form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_HEADER = re.compile(r"^-- name: (?P<name>[a-z_]+)\n-- (?P<purpose>.+)\n", re.M)
# A `:name` parameter: not a `::` cast, as SQLAlchemy's `text()` reads them.
_PARAM = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@dataclass(frozen=True)
class Query:
    name: str
    purpose: str
    sql: str
    source: str  # the file it is in

    @property
    def psycopg(self) -> str:
        """The statement as psycopg takes it: `%(name)s` parameters, and `%` written `%%`."""
        return _PARAM.sub(r"%(\1)s", self.sql.replace("%", "%%"))


def parse(source: str, content: str) -> dict[str, Query]:
    """The queries of one file; every statement must have a header, and a name is used once."""
    headers = list(_HEADER.finditer(content))
    if not headers or content[: headers[0].start()].strip():
        raise ValueError(f"{source}: text before the first `-- name:` header")
    out: dict[str, Query] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        body = content[header.end() : following.start() if following else len(content)].strip()
        body = body.removesuffix(";").strip()
        name = header["name"]
        if not body or ";" in body:
            raise ValueError(f"{source}: query {name} must be exactly one statement")
        if name in out:
            raise ValueError(f"{source}: query {name} is defined twice")
        out[name] = Query(name, header["purpose"].strip(), body, source)
    return out


@cache
def load() -> dict[str, Query]:
    """All named queries, by name, from every file under `sql/`."""
    queries: dict[str, Query] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for name, query in parse(path.name, path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name} is in both {queries[name].source} and {path.name}")
            queries[name] = query
    return queries


@cache
def statement(name: str) -> str:
    """Named query `name`, as psycopg runs it."""
    return load()[name].psycopg
