"""`pacore fleet autoscale`: one model's workers on this machine, as many as its demand wants.

Every `interval` seconds it reads the model's demand (the view `fleet_demand`, the same number the KEDA
ScaledObject reads) and sizes the fleet by `pacore.core.scaling` (the same formula and bounds):

- out: starts `pacore worker` processes at once, each with `--concurrency per_worker`;
- in: only by drain, never by a kill: SIGTERM to the least busy workers (fewest running trajectories),
  after the cooldown. A drained worker stops taking work, lets its generations end within its grace
  (`--drain-grace`, long by default: nothing forces a scale-in to be quick, unlike a spot reclaim) and
  hands back, checkpointed, only what would not; it exits 0 and leaves the fleet registry. Until then it is
  counted as going, not as capacity.

A worker that exits on its own is logged with its exit code (its trajectories are re-driven by their
lease) and replaced if still wanted. SIGTERM or SIGINT to the autoscaler drains every worker it started
and waits for them, saying so. It never waits silently: every change is logged with its reason, and a
line says what it waits for while workers drain.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pacore.core.scaling import Scaler
from pacore.store.database import Database

log = logging.getLogger("pacore.autoscale")

SAY_SECONDS = 30  # while workers drain, say so this often
HOLD_SECONDS = 30  # after a worker exited on its own, no new one starts for this long (no crash loop)


@dataclass
class Child:
    number: int
    process: subprocess.Popen[bytes]
    started: float
    draining_since: float | None = None
    said: float = field(default=0.0)

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class Plan:
    model: str
    engine_url: str
    least: int
    most: int
    per_worker: int
    cooldown: float
    interval: float
    drain_grace: float
    log_dir: Path | None


class Autoscaler:
    def __init__(self, db: Database, plan: Plan) -> None:
        self.db, self.plan = db, plan
        self.scaler = Scaler(plan.per_worker, plan.least, plan.most, plan.cooldown)
        self.children: list[Child] = []
        self.started = 0
        self.stopping = threading.Event()
        self.host = socket.gethostname()
        self.last: tuple[int, int] | None = None  # (demand, target) last said
        self.hold_until = 0.0

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        p = self.plan
        log.info(
            "autoscaling %s on %s: %d-%d workers of %d slots, one per %d slots of demand; cooldown %gs, "
            "every %gs",
            p.model,
            p.engine_url,
            p.least,
            p.most,
            p.per_worker,
            p.per_worker,
            p.cooldown,
            p.interval,
        )
        while not self.stopping.is_set():
            self.tick(time.monotonic())
            self.stopping.wait(p.interval)
        return self.shutdown()

    def tick(self, now: float) -> None:
        self.reap(now)
        try:
            with self.db.store() as store:
                demand = store.demand_of_model(self.plan.model)
        except Database.OUTAGES as exc:
            log.warning("cannot read the demand (%s): keeping %d workers", type(exc).__name__, len(self.live))
            return
        target = self.scaler.target(demand, now)
        live = self.live
        if (demand, target) != self.last:
            log.info(
                "demand %d slots: %d workers wanted (have %d, %d draining)",
                demand,
                target,
                len(live),
                len(self.children) - len(live),
            )
            self.last = (demand, target)
        if target > len(live) and now < self.hold_until:
            pass  # a worker exited on its own: the log said when the next one starts
        elif target > len(live):
            for _ in range(target - len(live)):
                self.start()
        elif target < len(live):
            self.drain(self.least_busy(live, len(live) - target), now, "demand fell")
        self.say_draining(now)

    # -- workers ----------------------------------------------------------------------------------------

    @property
    def live(self) -> list[Child]:
        return [c for c in self.children if c.draining_since is None]

    def start(self) -> None:
        p = self.plan
        self.started += 1
        args = [
            sys.executable,
            "-m",
            "pacore.cli",
            "worker",
            "--engine-url",
            p.engine_url,
            "--model",
            p.model,
            "--concurrency",
            str(p.per_worker),
        ]
        env = {**os.environ, "PACORE_DRAIN_GRACE_SECONDS": str(p.drain_grace)}
        out: IO[Any] | None = None
        if p.log_dir is not None:
            out = (p.log_dir / f"worker-{self.started}.log").open("ab")
        try:
            # its own session: a terminal's Ctrl-C reaches the autoscaler alone, which drains it
            process = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy
        self.children.append(Child(self.started, process, time.monotonic()))
        log.info("started worker %d (pid %d)", self.started, process.pid)

    def least_busy(self, live: list[Child], n: int) -> list[Child]:
        """The `n` workers generating least now (a worker not registered yet generates nothing); the
        youngest first among equals."""
        try:
            with self.db.store() as store:
                running = store.running_by_pid(self.host, [c.pid for c in live])
        except Database.OUTAGES:
            running = {}
        return sorted(live, key=lambda c: (running.get(c.pid, 0), -c.started))[:n]

    def drain(self, children: list[Child], now: float, why: str) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
            child.draining_since = child.said = now
            log.info("draining worker %d (pid %d): %s", child.number, child.pid, why)

    def reap(self, now: float) -> None:
        for child in list(self.children):
            code = child.process.poll()
            if code is None:
                continue
            self.children.remove(child)
            if child.draining_since is not None:
                log.log(
                    logging.INFO if code == 0 else logging.WARNING,
                    "worker %d (pid %d) drained in %.1fs, exit code %d",
                    child.number,
                    child.pid,
                    now - child.draining_since,
                    code,
                )
            else:
                self.hold_until = now + HOLD_SECONDS
                log.error(
                    "worker %d (pid %d) exited on its own with code %d (its trajectories are re-driven when "
                    "their leases run out; see its log); another starts in %ds if still wanted",
                    child.number,
                    child.pid,
                    code,
                    HOLD_SECONDS,
                )

    def say_draining(self, now: float) -> None:
        for child in self.children:
            if child.draining_since is not None and now - child.said >= SAY_SECONDS:
                child.said = now
                log.info(
                    "waiting for worker %d (pid %d) to drain: %.0fs so far, its grace is %gs",
                    child.number,
                    child.pid,
                    now - child.draining_since,
                    self.plan.drain_grace,
                )

    def shutdown(self) -> int:
        """Drain every worker and wait for them all; 0 when every one exited 0."""
        now = time.monotonic()
        self.drain(self.live, now, "the autoscaler is stopping")
        if self.children:
            log.info("waiting for %d workers to drain before exiting", len(self.children))
        codes = []
        while self.children:
            time.sleep(0.2)
            now = time.monotonic()
            codes += [c.process.returncode for c in self.children if c.process.poll() is not None]
            self.reap(now)
            self.say_draining(now)
        return 0 if all(code == 0 for code in codes) else 1
