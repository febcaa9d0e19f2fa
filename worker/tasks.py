"""The `generate` task: claim, stream from the engine within the budget, write fenced. Never raises for
engine failures (the chord callback must always run); returns the trajectory id only."""

from __future__ import annotations

import logging

from celery import Celery

from pacore.tokens import Fenced
from scheduler.app import runtime
from worker import claims, generation

log = logging.getLogger("pacore.worker")


def register(app: Celery) -> None:
    @app.task(name="pacore.generate")
    def generate(trajectory_id: int, attempt: int) -> int:
        rt = runtime(app)
        if rt.engine is None:
            raise RuntimeError("this process has no engine: generate tasks run on `pacore worker`")
        worker_id = rt.worker_id or "?"
        claim = claims.claim(rt.db, trajectory_id, attempt, worker_id, rt.settings.lease_seconds)
        if claim is None:
            return trajectory_id
        try:
            result, error, spent = generation.generate(rt.engine, rt.db, claim, rt.settings)
        except Fenced:
            log.info("trajectory %d attempt %d was taken over; dropping this attempt", trajectory_id, attempt)
            return trajectory_id
        if error:
            log.warning("trajectory %d attempt %d failed: %s", trajectory_id, attempt, error)
        claims.finish(rt.db, claim, worker_id, result, error, spent, rt.settings.token_grant)
        return trajectory_id
