"""The `generate` task: claim, stream from the engine within the budget, write fenced, or hand the
trajectory back. Never raises for engine failures (the chord callback must always run); returns the
trajectory id only."""

from __future__ import annotations

import logging

from celery import Celery

from pacore import metrics
from pacore.core.vocabulary import Outcome
from pacore.logs import ids
from pacore.store.budgets import Fenced
from scheduler.app import Runtime, runtime
from worker import claims, generation
from worker.node import Node

log = logging.getLogger("pacore.worker")


def register(app: Celery, node: Node) -> None:
    """The generate task of this worker process, generating with `node`'s engine."""

    @app.task(name="pacore.generate")
    def generate(trajectory_id: int, attempt: int) -> int:
        rt = runtime(app)
        if not node.begin(trajectory_id):
            return trajectory_id  # a duplicate of a message this process is working on
        metrics.ACTIVE_GENERATIONS.inc()
        try:
            return _generate(rt, node, trajectory_id, attempt)
        finally:
            metrics.ACTIVE_GENERATIONS.dec()
            node.end(trajectory_id)


def _generate(rt: Runtime, node: Node, trajectory_id: int, attempt: int) -> int:
    """Claim, generate, then write the result or hand the trajectory back."""
    db = rt.db
    claim = db.through_outages(
        claims.claim,
        db,
        trajectory_id,
        attempt,
        node.worker_id,
        rt.settings.lease_seconds,
        node.max_model_len,
        (rt.settings.token_block, rt.settings.token_grant),  # the claim takes the first block
    )
    if claim is None:
        return trajectory_id
    node.generating(trajectory_id, attempt)
    h = claim.holder
    where = ids(
        campaign_id=h.campaign_id,
        run_id=h.run_id,
        trajectory_id=trajectory_id,
        attempt=attempt,
        worker_id=node.worker_id,
    )
    try:
        attempted = generation.generate(node, db, claim, rt.settings)
    except Fenced:
        log.info(
            "trajectory %d attempt %d was taken over; dropping this attempt",
            trajectory_id,
            attempt,
            extra=where,
        )
        return trajectory_id
    if attempted.handed_back == "superseded":  # cancelled, or re-driven elsewhere: nothing to write
        log.info(
            "trajectory %d attempt %d is no longer ours; stopped generating it after %d tokens (settled "
            "with it, as all the attempt held)",
            trajectory_id,
            attempt,
            attempted.spent.tokens,
            extra=where,
        )
        return trajectory_id
    if attempted.handed_back:
        metrics.HANDED_BACK.labels(attempted.handed_back).inc()
        if not db.through_outages(
            claims.hand_back,
            db,
            claim,
            node.worker_id,
            attempted.spent,
            attempted.handed_back,
        ):
            _late(trajectory_id, attempt, attempted.spent.tokens, "hand-back", where)
            return trajectory_id
        log.info(
            "trajectory %d attempt %d handed back (%s) after %d tokens, checkpointed",
            trajectory_id,
            attempt,
            attempted.handed_back,
            attempted.spent.tokens,
            extra=where,
        )
        return trajectory_id
    if attempted.error:
        log.warning(
            "trajectory %d attempt %d failed: %s", trajectory_id, attempt, attempted.error, extra=where
        )
    if not db.through_outages(
        claims.finish,
        db,
        claim,
        node.worker_id,
        attempted.result,
        attempted.error,
        attempted.spent,
        1 if attempted.definitive else rt.settings.max_attempts,  # a 4xx: the same for any attempt
    ):
        _late(trajectory_id, attempt, attempted.spent.tokens, "result", where)
    metrics.ATTEMPTS.labels(Outcome.DONE if attempted.result else Outcome.FAILED).inc()
    return trajectory_id


def _late(trajectory_id: int, attempt: int, tokens: int, what: str, where: dict[str, object]) -> None:
    """The attempt was fenced off before it could write (re-driven after its lease ran out, or cancelled):
    its tokens were settled then, as all it held; what it brings now is discarded, and said."""
    log.warning(
        "trajectory %d attempt %d: a late %s of %d tokens was discarded (the attempt was fenced off: "
        "re-driven or cancelled; it was settled then for all it held)",
        trajectory_id,
        attempt,
        what,
        tokens,
        extra=where,
    )
