"""Errors a person can act on (issue #15 item 2): a database that cannot be reached is one line saying
where, why and what to do, never a traceback, and never with its password."""

from __future__ import annotations

import pytest

PASSWORD = "db-pw-3e1f-never-show-me"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"postgresql://pacore:{PASSWORD}@127.0.0.1:1/pacore", "Connection refused"),
        (
            "postgresql://postgres@127.0.0.1:5432/no_such_database_here",
            'database "no_such_database_here" does not exist',
        ),
        (f"postgresql://pacore:{PASSWORD}@host:port:5432/x", "is not a PostgreSQL URL"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["db", "upgrade"]])
def test_a_database_that_cannot_be_reached_is_one_line(cli, url: str, why: str, command: list[str]) -> None:
    said = cli(*command, env={"PACORE_DATABASE_URL": url})
    assert said.returncode == 1
    lines = said.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), said.stderr
    assert why in lines[0] and "PACORE_DATABASE_URL" in lines[0]
    assert PASSWORD not in said.stderr + said.stdout
