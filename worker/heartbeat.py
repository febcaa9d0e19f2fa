"""The worker's heartbeat (ARCHITECTURE.md §3 rule 5): one statement per process, not per task,
extends the leases of every trajectory the process holds and refreshes its node row; then the
checkpoints of all its generations are written in one batch. A process that stops beating (killed,
frozen, partitioned) lets its leases expire; the reconciler re-drives them, and the next attempts
continue from the checkpoints."""

from __future__ import annotations

import logging
import threading
import time

from pacore.store.database import Database
from worker.node import Node

log = logging.getLogger("pacore.worker")


def beat(db: Database, worker_id: str, lease_seconds: int, holding: dict[int, int]) -> list[int]:
    """Extend the leases of the trajectories this process is generating (not of rows it claimed and
    then dropped on an unexpected error: those expire and are re-driven). Returns the ids it must stop
    generating: no longer its own (the campaign was cancelled, or the trajectory was re-driven)."""
    with db.store() as store:
        extended = store.extend_leases(worker_id, lease_seconds, holding)
        store.touch_worker(worker_id)
    return [t for t in holding if t not in extended]


def start(db: Database, node: Node, lease_seconds: int, every: float) -> threading.Event:
    """Beat (and checkpoint) every `every` seconds on a daemon thread until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        last = time.monotonic()  # the last beat that extended the leases
        while not stop.wait(every):
            try:
                holding = node.holding()
                gone = beat(db, node.worker_id, lease_seconds, holding)
                now = time.monotonic()
                if holding and now - last > lease_seconds / 2:  # holding nothing, no lease can run out
                    _late(now - last, lease_seconds, len(holding), len(gone))
                last = now
                if gone:
                    node.supersede(gone)
                node.checkpoints.flush(db)
            except Exception:  # the database may be restarting: keep beating, leases have slack
                log.exception("heartbeat failed")

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()
    return stop


def _late(gap: float, lease_seconds: int, holding: int, gone: int) -> None:
    """Said when the leases went unextended for more than half their length (this process was frozen or
    starved of CPU, or the database refused the beats): past the full length, the reconciler may have
    re-driven what this process was generating, each charged all it held."""
    log.warning(
        "heartbeat: the leases went %.1f s without an extension (they last %d s); %d of the %d trajectories "
        "this process generates are no longer its own",
        gap,
        lease_seconds,
        gone,
        holding,
    )
