"""The worker's heartbeat (ARCHITECTURE.md §3 rule 5): one statement per process, not per task,
extends the leases of every trajectory the process holds and refreshes its node row; then the
checkpoints of all its generations are written in one batch. A process that stops beating (killed,
frozen, partitioned) lets its leases expire; the reconciler re-drives them, and the next attempts
continue from the checkpoints."""

from __future__ import annotations

import logging
import threading

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
        while not stop.wait(every):
            try:
                gone = beat(db, node.worker_id, lease_seconds, node.holding())
                if gone:
                    node.supersede(gone)
                node.checkpoints.flush(db)
            except Exception:  # the database may be restarting: keep beating, leases have slack
                log.exception("heartbeat failed")

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()
    return stop
