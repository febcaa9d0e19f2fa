"""`pacore scheduler`: a Celery worker on the `control` queue (chord callbacks) plus a ticker thread
that runs the dispatch tick every PACORE_DISPATCH_INTERVAL seconds and the reconciler every
PACORE_RECONCILE_INTERVAL seconds.

A thread, not Celery beat: embedded beat forks a child process that outlives a scheduler killed with
-9 and keeps ticking against whatever it was pointed at. Both passes are safe to run from several
schedulers at once (row locks with SKIP LOCKED, guarded updates), so no leader election is needed.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery

from pacore import metrics
from pacore.settings import Settings
from pacore.store.database import Database
from scheduler.admission import Admission
from scheduler.app import CONTROL_QUEUE, consume, make_app, runtime
from scheduler.reconciler import Reconciler
from scheduler.tasks import dispatch_tick, register

log = logging.getLogger("pacore.scheduler")


def tick_forever(app: Celery, settings: Settings, stop: threading.Event) -> None:
    reconciler = Reconciler(app)
    next_reconcile = 0.0
    while not stop.wait(settings.dispatch_interval):
        try:
            dispatch_tick(app)
            if time.monotonic() >= next_reconcile:
                reconciler.tick()
                with runtime(app).db.store() as store:
                    metrics.refresh_campaign_gauges(store)
                next_reconcile = time.monotonic() + settings.reconcile_interval
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
    try:
        consume(app, CONTROL_QUEUE, concurrency, "scheduler", settings.log_level)
    finally:
        stop.set()
        ticker.join(timeout=10)
