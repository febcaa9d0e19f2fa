"""Control-queue tasks: the chord callback and the dispatch tick. Thin: ids in, pure code, persist, ids out."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import text

from scheduler.app import runtime
from scheduler.publish import publish
from scheduler.rounds import Publish, start_runs
from scheduler.sweep import advance_and_publish, stuck_rounds

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
    """Start pending runs, publish what never got published, advance rounds whose callback was lost."""
    rt = runtime(app)
    with rt.db.session() as session:
        started = start_runs(session, rt.settings, rt.settings.dispatch_batch)
    sent = publish(app, started)
    sent += _publish_unpublished(app)
    with rt.db.session() as session:
        stuck = stuck_rounds(session)
    for round_id in stuck:
        advance_and_publish(app, round_id)
    if sent:
        log.info("dispatched %d trajectories", sent)
    return sent


def _publish_unpublished(app: Celery) -> int:
    with runtime(app).db.session() as session:
        rows = session.execute(
            text(
                "SELECT t.round_id, c.config ->> 'model', t.id, t.attempt FROM trajectory t "
                "JOIN campaign c ON c.id = t.campaign_id JOIN round r ON r.id = t.round_id JOIN run ON run.id = r.run_id "
                "WHERE t.status = 'pending' AND t.published_at IS NULL AND run.status = 'running' "
                "AND t.created_at < now() - make_interval(secs => :grace) AND c.status = 'active' LIMIT 10000"
            ),
            {"grace": UNPUBLISHED_GRACE_SECONDS},
        ).all()
    by_round: dict[int, Publish] = {}
    for round_id, model, tid, attempt in rows:
        by_round.setdefault(round_id, Publish(round_id, model, [])).trajectories.append((tid, attempt))
    return publish(app, by_round.values())
