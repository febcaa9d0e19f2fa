"""Applying the pure `reconcile` decisions to the database, then publishing what they re-drive."""

from __future__ import annotations

import json
from collections import defaultdict

from celery import Celery
from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore import metrics, tokens
from pacore.core.reconcile import AdvanceRound, Redrive, Republish, RoundRow, TrajectoryRow, reconcile
from scheduler.app import runtime
from scheduler.publish import publish
from scheduler.rounds import Publish, advance_round


def load_rows(
    session: Session,
    campaign_id: int | None,
    everything: bool,
    republish_after: int,
    undelivered_before: dict[str, str] | None = None,
) -> tuple[list[RoundRow], list[TrajectoryRow]]:
    """The rows the reconciler may act on: rounds with nothing unfinished that did not advance, running
    trajectories whose lease expired and pending ones whose message is gone: published longer ago than
    the broker's visibility horizon, or (per model) before `undelivered_before` (with `everything`: all
    running and pending rows). The pure `reconcile` decides; this only narrows the read."""
    where = "" if campaign_id is None else "AND run.campaign_id = :cid"
    params = {
        "cid": campaign_id,
        "everything": everything,
        "horizon": republish_after,
        "cutoffs": json.dumps(undelivered_before or {}),
    }
    rounds = [RoundRow(rid, "generating", 0) for rid in stuck_rounds(session, campaign_id)]
    gone = (
        "(t.published_at < now() - make_interval(secs => :horizon) OR "
        "t.published_at < (CAST(:cutoffs AS jsonb) ->> (c.config ->> 'model'))::timestamptz)"
    )
    trajectories = session.execute(
        text(
            "SELECT t.id, t.round_id, t.status, t.attempt, coalesce(t.lease_until < now(), false), "
            f"coalesce({gone}, false) FROM trajectory t "
            "JOIN round r ON r.id = t.round_id JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = t.campaign_id "
            "WHERE ((t.status = 'running' AND (:everything OR t.lease_until < now())) "
            f"OR (t.status = 'pending' AND c.status = 'active' AND (:everything OR {gone}))) {where}"
        ),
        params,
    ).all()
    return rounds, [TrajectoryRow(*t) for t in trajectories]


def stuck_rounds(session: Session, campaign_id: int | None = None) -> list[int]:
    """Rounds still `generating` whose trajectories have all finished: their advance was lost."""
    where = "" if campaign_id is None else "AND run.campaign_id = :cid"
    return list(
        session.execute(
            text(
                "SELECT r.id FROM round r JOIN run ON run.id = r.run_id WHERE r.status = 'generating' "
                "AND NOT EXISTS (SELECT 1 FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id "
                f"WHERE rt.round_id = r.id AND t.status IN ('pending', 'running')) {where}"
            ),
            {"cid": campaign_id},
        ).scalars()
    )


def sweep(
    app: Celery,
    campaign_id: int | None = None,
    orphan_all_running: bool = False,
    queue_lost: bool = False,
    undelivered_before: dict[str, str] | None = None,
    trust_leases: bool = True,
) -> dict[str, int]:
    """Re-drive what was lost. In single-box mode (at start-up) every running row is orphaned; in a
    fleet, leases say which holders are gone, and a lost queue means every pending row's message is."""
    rt = runtime(app)
    everything = orphan_all_running or queue_lost
    with rt.db.session() as session:
        rows = load_rows(session, campaign_id, everything, rt.settings.republish_after, undelivered_before)
        actions = reconcile(
            *rows, orphan_all_running=orphan_all_running, queue_lost=queue_lost, trust_leases=trust_leases
        )
        to_publish: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for action in actions:
            if isinstance(action, Redrive) and _redrive(session, action):
                to_publish[action.round_id].append((action.trajectory_id, action.stale_attempt + 1))
            elif isinstance(action, Republish):
                to_publish[action.round_id].append((action.trajectory_id, action.attempt))
        models = _models(session, list(to_publish))
    publish(app, [Publish(rid, models[rid], tids) for rid, tids in to_publish.items()])
    for action in actions:
        if isinstance(action, AdvanceRound):
            advance_and_publish(app, action.round_id)
    counts: dict[str, int] = defaultdict(int)
    for action in actions:
        counts[type(action).__name__] += 1
    return dict(counts)


def advance_and_publish(app: Celery, round_id: int) -> int:
    """Advance the round and publish the next one at once: later rounds of started runs go before new
    runs (admission control counts them against its room)."""
    rt = runtime(app)
    with rt.db.session() as session:
        follow_up = advance_round(session, rt.settings, round_id)
    if follow_up:
        if rt.admission is not None:
            rt.admission.force(len(follow_up.trajectories))
        publish(app, [follow_up])
        with rt.db.session() as session:
            hop = session.execute(
                text(
                    "SELECT extract(epoch FROM clock_timestamp() - max(t.finished_at)) FROM round_trajectory rt "
                    "JOIN trajectory t ON t.id = rt.trajectory_id WHERE rt.round_id = :id"
                ),
                {"id": round_id},
            ).scalar()
        if hop is not None:
            metrics.ROUND_HOP.observe(float(hop))
    return 1


def _redrive(session: Session, action: Redrive) -> bool:
    """A new attempt fences the old one. The lost attempt is settled here, by what re-drives it: its
    blocks go back and the tokens it had streamed (as of its last block request or checkpoint) count
    as spent, in the ledger as preempted; what it checkpointed is kept (the next attempt continues it),
    the rest is waste."""
    moved = session.execute(
        text(
            "WITH old AS (SELECT id, tokens_reserved, tokens_streamed FROM trajectory WHERE id = :id FOR NO KEY UPDATE) "
            "UPDATE trajectory t SET status = 'pending', attempt = t.attempt + 1, worker_id = NULL, lease_until = NULL, "
            "tokens_reserved = 0, tokens_streamed = 0 FROM old "
            "WHERE t.id = old.id AND t.attempt = :attempt AND t.status = 'running' "
            "RETURNING old.tokens_reserved, old.tokens_streamed, t.campaign_id, "
            "(SELECT r.run_id FROM round r WHERE r.id = t.round_id), "
            "(SELECT coalesce(sum(c.tokens), 0) FROM chunk c WHERE c.trajectory_id = t.id AND c.attempt = :attempt)"
        ),
        {"id": action.trajectory_id, "attempt": action.stale_attempt},
    ).first()
    if moved is None:
        return False
    reserved, streamed, campaign_id, run_id, kept = moved
    holder = tokens.Holder(action.trajectory_id, action.stale_attempt, run_id, campaign_id)
    tokens.settle_lost(
        session, holder, reserved, streamed, kept, "preempted", "the process holding it is gone"
    )
    return True


def _models(session: Session, round_ids: list[int]) -> dict[int, str]:
    rows = session.execute(
        text(
            "SELECT r.id, c.config ->> 'model' FROM round r JOIN run ON run.id = r.run_id "
            "JOIN campaign c ON c.id = run.campaign_id WHERE r.id = ANY(:ids)"
        ),
        {"ids": round_ids},
    ).all()
    return dict(rows)
