"""The worker's heartbeat (ARCHITECTURE.md §3 rule 5): one statement per process, not per task,
extends the leases of every trajectory the process holds and refreshes its node row; then the
checkpoints of all its generations are written in one batch. A process that stops beating (killed,
frozen, partitioned) lets its leases expire; the reconciler re-drives them, and the next attempts
continue from the checkpoints."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import text

from pacore.db import Database
from worker.checkpoint import Checkpoints

log = logging.getLogger("pacore.worker")


def beat(db: Database, worker_id: str, lease_seconds: int) -> int:
    with db.session() as session:
        extended = session.execute(
            text(
                "UPDATE trajectory SET lease_until = now() + make_interval(secs => :lease) "
                "WHERE worker_id = :worker AND status = 'running'"
            ),
            {"worker": worker_id, "lease": lease_seconds},
        ).rowcount  # type: ignore[attr-defined]
        session.execute(
            text("UPDATE worker SET heartbeat_at = now() WHERE id = :worker"), {"worker": worker_id}
        )
    return int(extended)


def start(
    db: Database, worker_id: str, lease_seconds: int, every: float, checkpoints: Checkpoints
) -> threading.Event:
    """Beat (and checkpoint) every `every` seconds on a daemon thread until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                beat(db, worker_id, lease_seconds)
                checkpoints.flush(db)
            except Exception:  # the database may be restarting: keep beating, leases have slack
                log.exception("heartbeat failed")

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()
    return stop
