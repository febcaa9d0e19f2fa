"""Campaign control as database flags (ARCHITECTURE.md §3 rule 9: never Celery's revoke).

- pause: the campaign stops starting runs and its workers stop claiming; generations already running
  finish and their rounds advance. resume: active again, and every pending trajectory is unstamped so
  the scheduler's next tick publishes it (messages consumed while paused were dropped by the claim).
- cancel: the campaign, its unfinished rounds, runs and trajectories are cancelled in one transaction;
  running attempts are fenced off (their workers learn it from their next heartbeat and stop
  generating) and settled; every run's budget is closed.
- retry --failed: failed runs get their failed last round again (new attempts for its failed
  trajectories); the run's budget is reopened.
- delete: the campaign and everything under it.

Lock order, as everywhere: round, then trajectory, then run, then campaign.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore import tokens
from pacore.status import find_campaign


class ControlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Changed:
    campaign: str
    status: str
    runs: int = 0
    trajectories: int = 0


def _campaign(session: Session, name: str) -> tuple[int, str]:
    campaign = find_campaign(session, name)
    assert campaign.id is not None
    return campaign.id, campaign.status


def pause(session: Session, name: str) -> Changed:
    cid, status = _campaign(session, name)
    if status != "active":
        raise ControlError(f"campaign {name!r} is {status}: only an active campaign can be paused")
    session.execute(text("UPDATE campaign SET status = 'paused' WHERE id = :id"), {"id": cid})
    return Changed(name, "paused")


def resume(session: Session, name: str) -> Changed:
    cid, status = _campaign(session, name)
    if status != "paused":
        raise ControlError(f"campaign {name!r} is {status}: only a paused campaign can be resumed")
    session.execute(text("UPDATE campaign SET status = 'active' WHERE id = :id"), {"id": cid})
    unstamped = session.execute(
        text("UPDATE trajectory SET published_at = NULL WHERE campaign_id = :id AND status = 'pending'"),
        {"id": cid},
    ).rowcount  # type: ignore[attr-defined]
    from scheduler.rounds import finish_campaign_if_done  # a run may have been the last one

    finish_campaign_if_done(session, cid)
    return Changed(name, "active", trajectories=int(unstamped))


def cancel(session: Session, name: str) -> Changed:
    cid, status = _campaign(session, name)
    if status not in ("active", "paused"):
        raise ControlError(f"campaign {name!r} is {status}: there is nothing to cancel")
    users = _pool_users(session, cid, unfinished_only=True)
    if users:
        raise ControlError(
            f"campaign {name!r} is still generating a round-1 pool that {', '.join(map(repr, users))} use: "
            "cancel those first, or pause this one"
        )
    # Rounds first: a round that is no longer `generating` cannot advance (its guarded update fails), and
    # an advance already under way holds the round's lock, so what it creates is seen below.
    session.execute(
        text(
            "UPDATE round r SET status = 'cancelled', finished_at = now() FROM run "
            "WHERE run.id = r.run_id AND run.campaign_id = :id AND r.status = 'generating'"
        ),
        {"id": cid},
    )
    running = session.execute(
        text(
            "SELECT t.id, t.attempt, r.run_id, t.tokens_reserved, t.tokens_streamed FROM trajectory t "
            "JOIN round r ON r.id = t.round_id WHERE t.campaign_id = :id AND t.status = 'running' "
            "ORDER BY t.id FOR NO KEY UPDATE OF t"
        ),
        {"id": cid},
    ).all()
    for trajectory_id, attempt, run_id, reserved, streamed in running:
        holder = tokens.Holder(trajectory_id, attempt, run_id, cid)
        tokens.settle_lost(session, holder, reserved, streamed, 0, "cancelled", "cancelled by the operator")
    cancelled = session.execute(
        text(
            "UPDATE trajectory SET status = 'cancelled', attempt = attempt + 1, worker_id = NULL, "
            "lease_until = NULL, tokens_reserved = 0, tokens_streamed = 0, finished_at = now() "
            "WHERE campaign_id = :id AND status IN ('pending', 'running')"
        ),
        {"id": cid},
    ).rowcount  # type: ignore[attr-defined]
    runs = (
        session.execute(
            text(
                "UPDATE run SET status = 'cancelled', reason = 'cancelled by the operator', finished_at = now() "
                "WHERE campaign_id = :id AND status IN ('pending', 'running', 'quarantined') RETURNING id"
            ),
            {"id": cid},
        )
        .scalars()
        .all()
    )
    for run_id in runs:
        tokens.finish_run(session, run_id, cid)
    session.execute(
        text("UPDATE campaign SET status = 'cancelled', finished_at = now() WHERE id = :id"), {"id": cid}
    )
    return Changed(name, "cancelled", len(runs), int(cancelled))


def retry_failed(session: Session, name: str) -> Changed:
    """Failed runs run their failed round again: new attempts for its failed trajectories."""
    cid, status = _campaign(session, name)
    if status == "cancelled":
        raise ControlError(f"campaign {name!r} is cancelled: there is nothing to retry")
    rounds = session.execute(
        text(
            "SELECT DISTINCT ON (run.id) run.id, r.id FROM run JOIN round r ON r.run_id = run.id "
            "WHERE run.campaign_id = :id AND run.status = 'failed' ORDER BY run.id, r.index DESC"
        ),
        {"id": cid},
    ).all()
    if not rounds:
        return Changed(name, status)
    round_ids = [round_id for _, round_id in rounds]
    session.execute(
        text(
            "UPDATE round SET status = 'generating', finished_at = NULL, decision = NULL WHERE id = ANY(:ids)"
        ),
        {"ids": round_ids},
    )
    again = session.execute(
        text(
            "UPDATE trajectory SET status = 'pending', attempt = attempt + 1, published_at = NULL, error = NULL, "
            "finished_at = NULL, finish_seq = NULL, worker_id = NULL WHERE round_id = ANY(:ids) AND status = 'failed'"
        ),
        {"ids": round_ids},
    ).rowcount  # type: ignore[attr-defined]
    for run_id, _ in rounds:
        session.execute(
            text(
                "UPDATE run SET status = 'running', reason = NULL, finished_at = NULL, answer = NULL, "
                "final_message = NULL WHERE id = :id"
            ),
            {"id": run_id},
        )
        tokens.reopen_run(session, run_id, cid)
    if status == "done":
        session.execute(
            text("UPDATE campaign SET status = 'active', finished_at = NULL WHERE id = :id"), {"id": cid}
        )
    return Changed(name, "active" if status == "done" else status, len(rounds), int(again))


def _pool_users(session: Session, cid: int, unfinished_only: bool) -> list[str]:
    """Other campaigns whose rounds use this campaign's (round-1 pool) trajectories."""
    return list(
        session.execute(
            text(
                "SELECT DISTINCT c.name FROM trajectory t JOIN round_trajectory rt ON rt.trajectory_id = t.id "
                "JOIN round r ON r.id = rt.round_id JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id "
                "WHERE t.campaign_id = :id AND run.campaign_id <> :id "
                "AND (NOT :unfinished OR t.status IN ('pending', 'running')) ORDER BY c.name"
            ),
            {"id": cid, "unfinished": unfinished_only},
        ).scalars()
    )


def delete(session: Session, name: str) -> Changed:
    cid, status = _campaign(session, name)
    users = _pool_users(session, cid, unfinished_only=False)
    if users:
        raise ControlError(
            f"campaign {name!r} holds a round-1 pool that {', '.join(map(repr, users))} use: delete those first"
        )
    if status == "active":
        running = session.execute(
            text("SELECT count(*) FROM trajectory WHERE campaign_id = :id AND status = 'running'"),
            {"id": cid},
        ).scalar_one()
        if running:
            raise ControlError(
                f"campaign {name!r} has {running} trajectories generating: cancel it first (`pacore cancel`)"
            )
    runs = session.execute(text("SELECT count(*) FROM run WHERE campaign_id = :id"), {"id": cid}).scalar_one()
    session.execute(text("DELETE FROM campaign WHERE id = :id"), {"id": cid})  # cascades
    return Changed(name, "deleted", int(runs))
