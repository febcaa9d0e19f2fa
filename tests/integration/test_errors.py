"""Errors a person can act on (issue #15 item 2): a database or a broker that cannot be reached is one
line saying where, why and what to do, never a traceback, and never with its password."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import pacore_env, pacore_executable

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


def test_a_broker_that_cannot_be_reached_is_said_in_one_line_not_a_traceback_a_second(
    database_url: str, tmp_path
) -> None:
    log = tmp_path / "scheduler.log"
    env = pacore_env(
        PACORE_DATABASE_URL=database_url,
        PACORE_BROKER_URL=f"redis://:{PASSWORD}@127.0.0.1:1/0",
        PACORE_DISPATCH_INTERVAL="0.2",
    )
    with log.open("w") as out:
        scheduler = subprocess.Popen([pacore_executable(), "scheduler"], env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 60
            while "cannot reach the broker" not in log.read_text():
                assert time.monotonic() < deadline and scheduler.poll() is None, log.read_text()[-3000:]
                time.sleep(0.1)
            # Celery's consumer retries at 2 s: by its second try the ticker has failed about ten times
            while log.read_text().count("Cannot connect to redis") < 2:
                assert time.monotonic() < deadline and scheduler.poll() is None, log.read_text()[-3000:]
                time.sleep(0.1)
        finally:
            scheduler.terminate()
            scheduler.wait(30)
    text = log.read_text()
    said = [line for line in text.splitlines() if "cannot reach the broker" in line]
    assert said and "redis://:***@127.0.0.1:1/0" in said[0] and "PACORE_BROKER_URL" in said[0]
    assert "scheduler tick failed" not in text and PASSWORD not in text
