"""The database door: every statement is a named query with a purpose, run only through `Store`, and
none is dead or missing."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from pacore.store import queries
from pacore.store.store import Store

REPO = Path(__file__).resolve().parents[2]


def test_every_query_has_a_unique_name_a_purpose_and_one_statement() -> None:
    loaded = queries.load()
    headers = [
        line
        for path in (REPO / "pacore/store/sql").glob("*.sql")
        for line in path.read_text().splitlines()
        if line.startswith("-- name:")
    ]
    assert len(loaded) == len(headers) > 0, "every `-- name:` header is one query"
    for query in loaded.values():
        assert re.fullmatch(r"[a-z_]+", query.name) and len(query.purpose) > 15, query
        assert query.sql and ";" not in query.sql, query.name


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SELECT 1;", "before the first `-- name:` header"),
        ("-- name: a\n-- the first\nSELECT 1;\n-- name: a\n-- again\nSELECT 2;", "defined twice"),
        ("-- name: a\n-- two statements\nSELECT 1; SELECT 2;", "exactly one statement"),
        ("-- name: a\n-- nothing\n", "exactly one statement"),
    ],
)
def test_malformed_query_files_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        queries.parse("x.sql", text)


RUNNERS = {"execute", "one", "all", "scalar", "scalars", "count"}


def _names_used_by_the_store() -> set[str]:
    """The query names the store's modules run: the name argument of `execute`, `one`, `all`, ...
    (the first string constant among the arguments), and `load()["name"]`."""
    used = set()
    modules = {inspect.getmodule(cls) for cls in Store.__mro__ if cls.__module__.startswith("pacore.store")}
    for module in modules:
        for node in ast.walk(ast.parse(inspect.getsource(module))):  # type: ignore[arg-type]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in RUNNERS
            ):
                strings = [
                    a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                ]
                used.update(strings[:1])
            elif isinstance(node, ast.Subscript) and isinstance(getattr(node.slice, "value", None), str):
                used.add(node.slice.value)  # type: ignore[attr-defined]
    return used


def test_every_query_is_run_by_the_store_and_every_name_it_runs_exists() -> None:
    loaded = set(queries.load())
    used = _names_used_by_the_store()
    assert used - loaded == set(), "the store runs queries that do not exist"
    schema = {"has_schema_version", "schema_version"}  # run by Database on a bare connection
    assert loaded - used - schema == set(), "queries nobody runs"


def test_no_sql_outside_the_store() -> None:
    """No `text(...)` statement and no SQLAlchemy session use in pacore, scheduler or worker outside the
    store (import-linter forbids the imports; this catches SQL written as plain strings too)."""
    offenders = []
    for path in [*REPO.glob("pacore/**/*.py"), *REPO.glob("scheduler/*.py"), *REPO.glob("worker/*.py")]:
        if "pacore/store" in path.as_posix():
            continue
        source = path.read_text()
        for pattern in (
            r"\bSELECT\b.+\bFROM\b",
            r"\bUPDATE\b \w+ SET\b",
            r"\bINSERT INTO\b",
            r"\bDELETE FROM\b",
        ):
            for match in re.finditer(pattern, source):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0)[:60]}")
    assert offenders == []


def test_a_query_goes_to_psycopg_with_its_parameters_named_and_its_percent_signs_doubled() -> None:
    (query,) = queries.parse(
        "x.sql",
        "-- name: sample\n-- A statement with every kind of colon and a percent sign.\n"
        "SELECT (c.config ->> 'x')::float, CAST(:b AS jsonb), '[]'::json FROM t "
        "WHERE t.a = :a AND t.n LIKE '%x%' AND t.d = ANY(:ids_2);\n",
    ).values()
    assert query.psycopg == (
        "SELECT (c.config ->> 'x')::float, CAST(%(b)s AS jsonb), '[]'::json FROM t "
        "WHERE t.a = %(a)s AND t.n LIKE '%%x%%' AND t.d = ANY(%(ids_2)s)"
    )
