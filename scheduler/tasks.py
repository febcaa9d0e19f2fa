"""Control-queue tasks: the chord callback and the dispatch tick. Thin: ids in, pure code, persist, ids out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import Celery

from pacore import metrics
from pacore.core.budget import wake_tokens
from pacore.settings import Settings
from scheduler.advance import advance_and_publish
from scheduler.app import runtime
from scheduler.publish import NEW_RUNS, publish
from scheduler.rounds import Publish, end_starved_run, start_runs

log = logging.getLogger("pacore.scheduler")

# A trajectory created but never stamped as published this long ago lost its message between commit
# and publish (a crash in that window): the tick publishes it again. A trajectory handed back (drain,
# engine lost) or failed and tried again is unstamped on purpose, so the next tick publishes its new
# attempt at once (not once its row is this old: a first attempt that failed fast waited up to 10 s).
UNPUBLISHED_GRACE_SECONDS = 10
# A round's chord callback advances it as its last trajectory finishes; the tick advances it in the
# callback's stead once that was this long ago (the callback was lost), never racing a callback on time.
CALLBACK_GRACE_SECONDS = 10


def register(app: Celery) -> None:
    @app.task(name="pacore.complete_round", ignore_result=True)
    def complete_round(round_id: int) -> int:
        advance_and_publish(app, round_id)
        return round_id


def dispatch_tick(app: Celery) -> int:
    """Measure the room admission control leaves; publish what is unpublished (later rounds first), then
    start pending runs in what room is left. Once per dispatch interval, however often runs that end
    wake the tick: end starved runs, and advance rounds whose callback was lost (late by
    CALLBACK_GRACE_SECONDS; unless PACORE_RECOVER_STUCK_ROUNDS is off). Those two look at every
    running run and generating round: a fleet whose runs end hundreds of times a second wakes the tick
    as often, and they then cost more of the database than starting runs does."""
    rt = runtime(app)
    admit = rt.admission.take if rt.admission is not None else None
    if rt.admission is not None:
        with rt.db.store() as store:
            rt.admission.refresh(store)
        for kind, value in (
            ("capacity", rt.admission.capacity),
            ("in_flight", rt.admission.in_flight),
            ("room", rt.admission.left()),
        ):
            metrics.ADMISSION.labels(kind).set(value)
    sent = _publish_unpublished(app, admit)
    with rt.db.store() as store:
        started = start_runs(store, rt.settings, rt.settings.dispatch_batch, rt.admission)
    sent += publish(app, started, NEW_RUNS)
    if time.monotonic() >= rt.checks_due:
        rt.checks_due = time.monotonic() + rt.settings.dispatch_interval
        _end_starved_runs(app)
        if rt.settings.recover_stuck_rounds:
            _advance_stuck_rounds(app)
    if sent:
        log.info("dispatched %d trajectories", sent)
    return sent


def _advance_stuck_rounds(app: Celery) -> None:
    with runtime(app).db.store() as store:
        stuck = store.stuck_rounds(grace=CALLBACK_GRACE_SECONDS)
    for round_id in stuck:
        try:  # one round that cannot advance never holds back the others
            advance_and_publish(app, round_id)
        except Exception:
            log.exception("round %d could not advance; the next tick tries again", round_id)


def _publish_unpublished(app: Celery, admit: Callable[[int], bool] | None) -> int:
    """Publish pending trajectories that have no message: rounds admission control deferred, work
    handed back, and rows whose publish was lost between commit and publish. Latest rounds first."""
    with runtime(app).db.store() as store:
        rows = store.unpublished_trajectories(UNPUBLISHED_GRACE_SECONDS, _wake(runtime(app).settings))
    by_round: dict[int, Publish] = {}
    for row in rows:
        item = by_round.setdefault(row.round_id, Publish(row.round_id, row.model, []))
        item.trajectories.append((row.trajectory_id, row.attempt))
    admitted = []
    for item in by_round.values():
        if admit is not None and not admit(len(item.trajectories)):
            break
        admitted.append(item)
    return publish(app, admitted)


def _end_starved_runs(app: Celery) -> None:
    """Runs starved of budget for good end (`end_starved_run`), each in a transaction of its own."""
    rt = runtime(app)
    with rt.db.store() as store:
        starved = store.starved_runs()
    wake = _wake(rt.settings)
    for run in starved:
        with rt.db.store() as store:
            end_starved_run(store, run, wake)


def _wake(settings: Settings) -> int:
    return wake_tokens(settings.token_block, settings.min_trajectory_tokens)
