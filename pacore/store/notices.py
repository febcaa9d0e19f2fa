"""Waking the scheduler when there is work to start: PostgreSQL's LISTEN/NOTIFY.

A submit, a resume, a retry or a lifted quarantine (`Store.wake_scheduler`, in the transaction that
made the work) notifies channel `WORK_CHANNEL` when it commits; each scheduler listens on a connection
of its own (`listen`) and runs its dispatch tick at once, instead of at its next interval. A notice is
only a hint: the tick still runs every PACORE_DISPATCH_INTERVAL, so a notice lost while the listener
reconnects (PostgreSQL restarting, say) delays the work by one interval at most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger("pacore.store")

WORK_CHANNEL = "pacore_work"
RECONNECT_SECONDS = 5.0  # between attempts to listen again while PostgreSQL cannot be reached


def libpq_url(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (`postgresql+psycopg://...` -> `postgresql://...`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def listen(url: str, on_notice: Callable[[], None], stop: threading.Event, poll: float = 1.0) -> None:
    """Call `on_notice` for each notice on `WORK_CHANNEL` (and once each time listening starts, for
    what was notified while it was not) until `stop` is set; blocks. Reconnects while PostgreSQL
    cannot be reached, saying so once per outage."""
    down_since: float | None = None
    while not stop.is_set():
        try:
            with psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"LISTEN {WORK_CHANNEL}")
                if down_since is not None:
                    log.info("listening for new work again after %.0f s", time.monotonic() - down_since)
                    down_since = None
                on_notice()
                while not stop.is_set():
                    for _ in conn.notifies(timeout=poll):
                        on_notice()
        except psycopg.Error as exc:  # the connection lost, or refused: listen again after a pause
            if down_since is None:
                down_since = time.monotonic()
                log.warning(
                    "cannot listen for new work (%s): the dispatch tick starts it at its interval until "
                    "PostgreSQL is back",
                    str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__,
                )
            stop.wait(RECONNECT_SECONDS)
