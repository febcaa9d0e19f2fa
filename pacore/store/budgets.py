"""Applying the budget decisions of pacore.core.budget to the database.

Each operation is one short transaction: lock the rows, read the counters, ask the pure code, write the
result. Locks are always taken in one order — the attempt's own trajectory row, then the run row, then
the campaign row — so that no two transactions can wait on each other in a cycle; and with FOR NO KEY
UPDATE, which foreign-key checks of concurrent inserts do not wait on. The campaign row is touched only
when a run takes a grant or ends, never per trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore.core.budget import (
    CampaignTokens,
    RunTokens,
    apply_finish,
    apply_grant,
    apply_reopen,
    apply_reserve,
    grant_request,
)


class Fenced(Exception):
    """The attempt no longer owns its trajectory (a newer attempt took over)."""


@dataclass(frozen=True)
class Holder:
    trajectory_id: int
    attempt: int
    run_id: int
    campaign_id: int


def lock_run(session: Session, run_id: int) -> RunTokens:
    row = session.execute(
        text(
            "SELECT token_limit, tokens_granted, tokens_used, tokens_reserved FROM run WHERE id = :id FOR NO KEY UPDATE"
        ),
        {"id": run_id},
    ).one()
    return RunTokens(*row)


def lock_campaign(session: Session, campaign_id: int) -> CampaignTokens:
    row = session.execute(
        text(
            "SELECT campaign_budget, tokens_used, tokens_reserved FROM campaign WHERE id = :id FOR NO KEY UPDATE"
        ),
        {"id": campaign_id},
    ).one()
    return CampaignTokens(*row)


def _write_run(session: Session, run_id: int, run: RunTokens) -> None:
    session.execute(
        text("UPDATE run SET tokens_granted = :g, tokens_used = :u, tokens_reserved = :r WHERE id = :id"),
        {"g": run.granted, "u": run.used, "r": run.reserved, "id": run_id},
    )


def _write_campaign(session: Session, campaign_id: int, campaign: CampaignTokens) -> None:
    session.execute(
        text("UPDATE campaign SET tokens_used = :u, tokens_reserved = :r WHERE id = :id"),
        {"u": campaign.used, "r": campaign.reserved, "id": campaign_id},
    )


def _take(
    session: Session, run: RunTokens, holder: Holder, want: int, minimum: int, grant: int
) -> tuple[RunTokens, int]:
    """Reserve from the run's grant, topping the grant up from the campaign when it cannot cover it."""
    updated, got = apply_reserve(run, want, minimum)
    if got:
        return updated, got
    campaign = lock_campaign(session, holder.campaign_id)
    run, campaign, given = apply_grant(run, campaign, grant_request(run, want, grant), minimum)
    if given:
        _write_campaign(session, holder.campaign_id, campaign)
    return apply_reserve(run, want, minimum)


def reserve(session: Session, holder: Holder, want: int, streamed: int, grant: int) -> int:
    """Reserve up to `want` tokens for a running attempt; 0 when the budget refuses. Raises Fenced."""
    owned = session.execute(
        text(
            "SELECT 1 FROM trajectory WHERE id = :id AND attempt = :attempt AND status = 'running' FOR NO KEY UPDATE"
        ),
        {"id": holder.trajectory_id, "attempt": holder.attempt},
    ).first()
    if owned is None:
        raise Fenced(f"trajectory {holder.trajectory_id} attempt {holder.attempt} is no longer running")
    run, got = _take(session, lock_run(session, holder.run_id), holder, want, minimum=1, grant=grant)
    if got:
        session.execute(
            text(
                "UPDATE trajectory SET tokens_reserved = tokens_reserved + :n, tokens_streamed = :s WHERE id = :id"
            ),
            {"n": got, "s": streamed, "id": holder.trajectory_id},
        )
        _write_run(session, holder.run_id, run)
    return got


def settle(
    session: Session, holder: Holder, reserved: int, used: int, wasted: int, prompt: int, grant: int
) -> int:
    """An attempt ends: its reservation becomes what it used. Once per (trajectory, attempt), guarded by
    the attempt ledger. Returns the overrun: tokens used past what the budget could cover, which only an
    engine sending several tokens in its last chunks can cause (vLLM streams one per chunk); it is taken
    from the budget when there is room, and reported when there is not."""
    run = lock_run(session, holder.run_id)
    if used > reserved:
        run, extra = _take(session, run, holder, used - reserved, minimum=used - reserved, grant=grant)
        reserved += extra
    overrun = max(0, used - reserved)
    run = replace(run, used=run.used + used, reserved=run.reserved - reserved)
    _write_run(session, holder.run_id, run)
    session.execute(
        text(
            "UPDATE run SET tokens_wasted = tokens_wasted + :w, prompt_tokens = prompt_tokens + :p WHERE id = :id"
        ),
        {"w": wasted, "p": prompt, "id": holder.run_id},
    )
    return overrun


def finish_run(session: Session, run_id: int, campaign_id: int) -> None:
    """A run ends: its usage moves to the campaign and the rest of its grant goes back."""
    run = lock_run(session, run_id)
    campaign = lock_campaign(session, campaign_id)
    run, campaign = apply_finish(run, campaign)
    _write_run(session, run_id, run)
    _write_campaign(session, campaign_id, campaign)


def room(session: Session, run_id: int, campaign_id: int) -> int | None:
    """What the run may still spend, at both levels (None: unlimited). Read at a round boundary."""
    run = lock_run(session, run_id)
    campaign = lock_campaign(session, campaign_id)
    limits = []
    if run.limit is not None:
        limits.append(run.limit - run.used - run.reserved)
    if campaign.available is not None:
        limits.append(campaign.available + run.free_grant)
    return max(0, min(limits)) if limits else None


def settle_lost(
    session: Session,
    holder: Holder,
    reserved: int,
    streamed: int,
    checkpointed: int,
    outcome: str,
    error: str,
) -> None:
    """Settle an attempt that will not finish (its process is gone, or its campaign was cancelled), once,
    through the ledger: what it had streamed (as of its last block request or checkpoint, never past
    its reservation) is spent; of that, what it checkpointed is kept for the next attempt, unless
    `outcome` is `cancelled` (nothing comes next), and the rest is waste."""
    used = min(max(streamed, checkpointed), reserved)
    wasted = used if outcome == "cancelled" else max(0, used - checkpointed)
    settled = session.execute(
        text(
            "INSERT INTO attempt (trajectory_id, attempt, outcome, preempted, completion_tokens, wasted_tokens, error) "
            "VALUES (:id, :attempt, :outcome, true, :used, :wasted, :error) "
            "ON CONFLICT (trajectory_id, attempt) DO NOTHING RETURNING id"
        ),
        {
            "id": holder.trajectory_id,
            "attempt": holder.attempt,
            "outcome": outcome,
            "used": used,
            "wasted": wasted,
            "error": error,
        },
    ).first()
    if settled is not None:
        settle(session, holder, reserved, used, wasted, 0, grant=0)


def reopen_run(session: Session, run_id: int, campaign_id: int) -> None:
    """A finished run runs again (retry): undo `finish_run`, so that finishing it again counts once."""
    run = lock_run(session, run_id)
    campaign = lock_campaign(session, campaign_id)
    run, campaign = apply_reopen(run, campaign)
    _write_run(session, run_id, run)
    _write_campaign(session, campaign_id, campaign)
