"""Control-queue tasks: the chord callback and the dispatch tick. Thin: ids in, pure code, persist, ids out."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery

from pacore import metrics
from scheduler.advance import advance_and_publish
from scheduler.app import runtime
from scheduler.publish import publish
from scheduler.rounds import Publish, start_runs

log = logging.getLogger("pacore.scheduler")

# A trajectory created but never stamped as published this long ago lost its message between commit
# and publish (a crash in that window): the tick publishes it again. A trajectory handed back (drain,
# engine lost) is unstamped on purpose, so the next tick publishes its new attempt.
UNPUBLISHED_GRACE_SECONDS = 10


def register(app: Celery) -> None:
    @app.task(name="pacore.complete_round", ignore_result=True)
    def complete_round(round_id: int) -> int:
        advance_and_publish(app, round_id)
        return round_id


def dispatch_tick(app: Celery) -> int:
    """Measure the room admission control leaves; publish what is unpublished (later rounds first), then
    start pending runs in what room is left; advance rounds whose callback was lost."""
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
    sent += publish(app, started)
    with rt.db.store() as store:
        stuck = store.stuck_rounds()
    for round_id in stuck:
        try:  # one round that cannot advance never holds back the others
            advance_and_publish(app, round_id)
        except Exception:
            log.exception("round %d could not advance; the next tick tries again", round_id)
    if sent:
        log.info("dispatched %d trajectories", sent)
    return sent


def _publish_unpublished(app: Celery, admit: Callable[[int], bool] | None) -> int:
    """Publish pending trajectories that have no message: rounds admission control deferred, work
    handed back, and rows whose publish was lost between commit and publish. Latest rounds first."""
    with runtime(app).db.store() as store:
        rows = store.unpublished_trajectories(UNPUBLISHED_GRACE_SECONDS)
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
