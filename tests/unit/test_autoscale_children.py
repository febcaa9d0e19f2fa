"""The autoscaler's bookkeeping of the workers it started, on real child processes (short Python
processes stand in for `pacore worker`): one that exits on its own holds new starts back and is said
with its exit code; one it drains gets SIGTERM and is said drained with its exit code."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any, cast

import pytest

from scheduler.autoscale import HOLD_SECONDS, Autoscaler, Child, Plan


def autoscaler() -> Autoscaler:
    plan = Plan("m", "http://127.0.0.1:1", 0, 2, 4, 1.0, 0.1, 60.0, None)
    return Autoscaler(cast(Any, None), plan)  # no database: these paths do not read one


def child(number: int, code: str) -> Child:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    return Child(number, process, time.monotonic())


def test_a_worker_that_exits_on_its_own_is_said_and_holds_new_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scaler = autoscaler()
    scaler.children.append(child(1, "raise SystemExit(3)"))
    scaler.children[0].process.wait(30)
    with caplog.at_level(logging.INFO, "pacore.autoscale"):
        scaler.reap(now=100.0)
    assert scaler.children == [] and scaler.hold_until == 100.0 + HOLD_SECONDS
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "worker 1 (pid " in caplog.text and "exited on its own with code 3" in caplog.text


def test_a_drained_worker_gets_sigterm_and_is_said_drained(caplog: pytest.LogCaptureFixture) -> None:
    scaler = autoscaler()
    # exits 0 on SIGTERM, as a worker does once its generations are handed back or done
    worker = child(
        2,
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)",
    )
    scaler.children.append(worker)
    assert worker.process.stdout is not None
    assert worker.process.stdout.readline() == b"ready\n"  # its handler is installed
    with caplog.at_level(logging.INFO, "pacore.autoscale"):
        scaler.drain([worker], now=5.0, why="demand fell")
        assert scaler.live == [] and worker.draining_since == 5.0
        worker.process.wait(30)
        scaler.reap(now=6.5)
    assert scaler.children == [] and scaler.hold_until == 0.0
    assert "draining worker 2 (pid" in caplog.text and "drained in 1.5s, exit code 0" in caplog.text
    assert worker.process.returncode == 0  # it exited through its SIGTERM handler
