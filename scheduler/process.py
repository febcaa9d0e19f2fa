"""`pacore scheduler`: a Celery worker on the `control` queue (chord callbacks) plus a ticker thread
that runs the dispatch tick every PACORE_DISPATCH_INTERVAL seconds, and at once when a chord callback
ends a run (its room can start another) or a submit, resume or retry commits (LISTEN/NOTIFY,
`pacore.store.notices`), and the reconciler every PACORE_RECONCILE_INTERVAL seconds.

A thread, not Celery beat: embedded beat forks a child process that outlives a scheduler killed with
-9 and keeps ticking against whatever it was pointed at. Both passes are safe to run from several
schedulers at once (row locks with SKIP LOCKED, guarded updates), so no leader election is needed.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from pacore import metrics
from pacore.core.urls import redact
from pacore.settings import Settings
from pacore.store import notices
from pacore.store.database import Database
from scheduler.admission import Admission
from scheduler.app import CONTROL_QUEUE, consume, make_app, runtime
from scheduler.reconciler import Reconciler
from scheduler.tasks import dispatch_tick, register

log = logging.getLogger("pacore.scheduler")


BROKER_SAY_SECONDS = 30  # while the broker cannot be reached, the ticker says so this often


def tick_forever(app: Celery, settings: Settings, stop: threading.Event) -> None:
    reconciler = Reconciler(app)
    next_reconcile = 0.0
    broker_down_since: float | None = None
    said = 0.0
    wake = runtime(app).wake
    while not stop.is_set():
        wake.wait(settings.dispatch_interval)  # a run that ended wakes it: its room starts another
        wake.clear()
        if stop.is_set():
            break
        try:
            dispatch_tick(app)
            if time.monotonic() >= next_reconcile:
                reconciler.tick()
                with runtime(app).db.store() as store:
                    metrics.refresh_campaign_gauges(store)
                next_reconcile = time.monotonic() + settings.reconcile_interval
            if broker_down_since is not None:
                log.warning(
                    "the broker is back after %.0f s: dispatching again", time.monotonic() - broker_down_since
                )
                broker_down_since = None
        except (KombuOperationalError, RedisConnectionError) as exc:  # one line, not a traceback a second
            now = time.monotonic()
            if broker_down_since is None:
                broker_down_since = now
            if now - said >= BROKER_SAY_SECONDS:
                log.error(
                    "cannot reach the broker at %s (%s): is Redis running, and is PACORE_BROKER_URL right? "
                    "Dispatching waits for it (for %.0f s so far)",
                    redact(app.conf.broker_url or ""),
                    str(exc).splitlines()[0][:200],
                    now - broker_down_since,
                )
                said = now
        except Exception:  # a failed pass is retried by the next one; the thread must not die
            log.exception("scheduler tick failed")


def run_scheduler(settings: Settings, db: Database, concurrency: int) -> None:
    app = make_app(settings, db)
    register(app)
    runtime(app).admission = Admission(settings)
    metrics.serve(settings.metrics_port, settings.metrics_address)
    stop = threading.Event()
    ticker = threading.Thread(
        target=tick_forever, args=(app, settings, stop), name="scheduler-tick", daemon=True
    )
    ticker.start()
    # a submit, resume or retry wakes the tick when it commits (a hint: the tick runs at its interval too)
    wake = runtime(app).wake
    threading.Thread(
        target=notices.listen, args=(db.url, wake.set, stop), name="scheduler-listen", daemon=True
    ).start()
    try:
        consume(app, CONTROL_QUEUE, concurrency, "scheduler", settings.log_level)
    finally:
        stop.set()
        ticker.join(timeout=10)
