"""The `generate_batch` task: claim a batch of a round's trajectories, stream each from the engine
within its budget, write each fenced, or hand it back. Never raises for engine failures (the chord
callback must always run); returns the trajectory ids only."""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery

from pacore import metrics
from pacore.core.vocabulary import Outcome
from pacore.logs import ids
from pacore.store.budgets import Fenced
from scheduler.app import Runtime, runtime
from worker import claims, generation
from worker.node import Node

log = logging.getLogger("pacore.worker")

# A batch's trajectories share their round's prompt. The first is sent alone and the others once it
# has its first token (its prompt is then in the engine's prefix cache, which they find: one prefill,
# not one per request scheduled in the same engine step), or after this long at most.
PRIME_SECONDS = 10


def register(app: Celery, node: Node) -> None:
    """The generate tasks of this worker process, generating with `node`'s engine."""

    # With Redis as result backend a chord counts its parts in Redis and needs no stored header
    # results: none are kept, so a finished campaign leaves no key behind. The database backend's
    # chord_unlock reads them, so there they are stored.
    native = bool(getattr(app.backend, "supports_native_join", False))

    @app.task(name="pacore.generate_batch", ignore_result=native)
    def generate_batch(pairs: list[list[int]]) -> list[int]:
        """A batch of a round's trajectories, as (trajectory id, attempt) pairs: claimed in one
        transaction, generated at once on this process's engine."""
        return _batch(runtime(app), node, [(int(t), int(a)) for t, a in pairs])

    @app.task(name="pacore.generate", ignore_result=native)
    def generate(trajectory_id: int, attempt: int) -> int:
        """A batch of one: the message of a scheduler from before batches, still in a queue."""
        _batch(runtime(app), node, [(trajectory_id, attempt)])
        return trajectory_id


def _batch(rt: Runtime, node: Node, pairs: list[tuple[int, int]]) -> list[int]:
    """Take up the batch's trajectories this process is not already generating (a duplicate message),
    claim them in one transaction, generate them at once (the first alone until its first token, see
    PRIME_SECONDS; the last on this thread, the others on generation threads), each writing its own
    result or handing its trajectory back, and each let go as soon as it is written: a trajectory
    handed back may come back to this process while its batch still runs."""
    node.message(+1)
    try:
        taken = [(t, a) for t, a in pairs if node.begin(t)]
        metrics.ACTIVE_GENERATIONS.inc(len(taken))
        try:
            settings = rt.settings
            found = (
                rt.db.through_outages(
                    claims.claim_batch,
                    rt.db,
                    taken,
                    node.worker_id,
                    settings.lease_seconds,
                    node.max_model_len,
                    (settings.token_block, settings.token_grant),  # the claim takes each first block
                )
                if taken
                else []
            )
        except BaseException:  # claimed or not, each is re-driven once its lease or message is stale
            for t, _ in taken:
                _let_go(node, t)
            raise
        claimed = [c for c in found if c is not None]
        for (t, _), c in zip(taken, found, strict=True):
            if c is None:  # not to be generated (done, stale, cancelled)
                _let_go(node, t)
            else:
                node.generating(t, c.attempt)
        others = []
        if len(claimed) > 1:  # the leader's prompt goes into the engine's prefix cache first
            primed = threading.Event()
            leader, claimed = claimed[0], claimed[1:]
            others.append(node.run(lambda: _one(rt, node, leader, primed)))
            if not _primed(node, primed):
                log.info("the batch's first generation has no token yet: starting the others without it")
        others += [node.run(lambda c=c: _one(rt, node, c)) for c in claimed[:-1]]
        try:
            if claimed:
                _one(rt, node, claimed[-1])
        finally:
            for future in others:
                try:
                    future.result()
                except Exception:  # its lease expires and it is re-driven; the others go on
                    log.exception("a generation of the batch failed unexpectedly")
    finally:
        node.message(-1)
    return [t for t, _ in pairs]


def _primed(node: Node, primed: threading.Event) -> bool:
    """Wait for the leader's first token, at most PRIME_SECONDS, and not once the process drains or its
    engine is lost (the others then start, and hand back at once)."""
    deadline = time.monotonic() + PRIME_SECONDS
    while not primed.wait(0.2):
        if node.draining.is_set() or node.engine_lost.is_set() or time.monotonic() > deadline:
            return False
    return True


def _one(rt: Runtime, node: Node, claim: claims.Claim, primed: threading.Event | None = None) -> None:
    try:
        _generate(rt, node, claim, primed)
    finally:
        _let_go(node, claim.trajectory_id)


def _let_go(node: Node, trajectory_id: int) -> None:
    node.end(trajectory_id)
    metrics.ACTIVE_GENERATIONS.dec()


def _generate(rt: Runtime, node: Node, claim: claims.Claim, primed: threading.Event | None = None) -> None:
    """Generate a claimed trajectory, then write the result or hand the trajectory back."""
    db = rt.db
    trajectory_id, attempt = claim.trajectory_id, claim.attempt
    h = claim.holder
    where = ids(
        campaign_id=h.campaign_id,
        run_id=h.run_id,
        trajectory_id=trajectory_id,
        attempt=attempt,
        worker_id=node.worker_id,
    )
    try:
        attempted = generation.generate(node, db, claim, rt.settings, primed)
    except Fenced:
        log.info(
            "trajectory %d attempt %d was taken over; dropping this attempt",
            trajectory_id,
            attempt,
            extra=where,
        )
        return
    if attempted.handed_back == "superseded":  # cancelled, or re-driven elsewhere: nothing to write
        log.info(
            "trajectory %d attempt %d is no longer ours; stopped generating it after %d tokens (settled "
            "with it, as all the attempt held)",
            trajectory_id,
            attempt,
            attempted.spent.tokens,
            extra=where,
        )
        return
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
            return
        log.info(
            "trajectory %d attempt %d handed back (%s) after %d tokens, checkpointed",
            trajectory_id,
            attempt,
            attempted.handed_back,
            attempted.spent.tokens,
            extra=where,
        )
        return
    if attempted.error:
        log.warning(
            "trajectory %d attempt %d failed: %s", trajectory_id, attempt, attempted.error, extra=where
        )
    if not db.through_outages(
        claims.finish,
        node.writes or db,  # results of the process's generations are committed together
        claim,
        node.worker_id,
        attempted.result,
        attempted.error,
        attempted.spent,
        1 if attempted.definitive else rt.settings.max_attempts,  # a 4xx: the same for any attempt
    ):
        _late(trajectory_id, attempt, attempted.spent.tokens, "result", where)
    metrics.ATTEMPTS.labels(Outcome.DONE if attempted.result else Outcome.FAILED).inc()


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
