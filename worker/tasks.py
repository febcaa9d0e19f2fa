"""The `generate` task: claim, stream from the engine, write fenced. Never raises for engine failures
(the chord callback must always run); returns the trajectory id only."""

from __future__ import annotations

import logging

from celery import Celery

from scheduler.app import runtime
from worker import claims
from worker.engine import EngineError

log = logging.getLogger("pacore.worker")


def register(app: Celery) -> None:
    @app.task(name="pacore.generate")
    def generate(trajectory_id: int, attempt: int) -> int:
        rt = runtime(app)
        if rt.engine is None:
            raise RuntimeError("this process has no engine: generate tasks run on `pacore worker`")
        claim = claims.claim(rt.db, trajectory_id, attempt, rt.worker_id or "?", rt.settings.lease_seconds)
        if claim is None:
            return trajectory_id
        try:
            result, error = rt.engine.generate(claim.request), None
        except EngineError as exc:
            result, error = None, str(exc)
            log.warning("trajectory %d attempt %d failed: %s", trajectory_id, attempt, error)
        claims.finish(rt.db, claim, rt.worker_id or "?", result, error)
        return trajectory_id
