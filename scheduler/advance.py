"""The chord callback's work: advance a finished round exactly once and publish what follows."""

from __future__ import annotations

import time

from celery import Celery

from pacore import metrics
from scheduler.app import Runtime, runtime
from scheduler.publish import publish
from scheduler.rounds import Publish, advance_round


def advance_and_publish(app: Celery, round_id: int) -> int:
    """Advance the round and publish the next one at once: later rounds of started runs go before new
    runs (admission control counts them against its room)."""
    rt = runtime(app)
    follow_up = rt.db.through_outages(_advance, rt, round_id)
    if follow_up is not None and rt.admission is not None:
        rt.admission.force(len(follow_up.trajectories))
    advanced = time.monotonic()
    if follow_up is None:  # the run ended (or another advance won): its room may start another
        rt.wake.set()
    else:
        n = len(follow_up.trajectories)
        try:
            publish(app, [follow_up])
        finally:
            if rt.admission is not None:
                rt.admission.stamped(n)
        if follow_up.waited is not None:  # the hop: last trajectory finished -> next round published
            metrics.ROUND_HOP.observe(follow_up.waited + time.monotonic() - advanced)
    return 1


def _advance(rt: Runtime, round_id: int) -> Publish | None:
    """One transaction, safe to run twice: the round's guarded update lets only one advance win."""
    with rt.db.store() as store:
        return advance_round(store, rt.settings, round_id)
