"""Writing rounds: starting runs, creating a round and its trajectories, and advancing a finished round.

Every function takes an open session and leaves committing to the caller, so that each decision and
its writes land in one transaction (ARCHITECTURE.md §3 rule 3). Messages are published after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore.core.answers import extract_boxed
from pacore.core.campaign import CampaignConfig
from pacore.core.compaction import Outcome, compact
from pacore.core.rounds import after_round


@dataclass(frozen=True)
class Publish:
    """A chord to publish after commit: these (trajectory id, attempt) pairs, then complete_round."""

    round_id: int
    model: str
    trajectories: list[tuple[int, int]]


def start_runs(session: Session, limit: int) -> list[Publish]:
    """Create round 1 for up to `limit` pending runs of active campaigns."""
    rows = session.execute(
        text(
            "SELECT run.id, run.campaign_id, p.messages, c.config FROM run "
            "JOIN problem p ON p.id = run.problem_id JOIN campaign c ON c.id = run.campaign_id "
            "WHERE run.status = 'pending' AND c.status = 'active' "
            "ORDER BY run.id LIMIT :limit FOR UPDATE OF run SKIP LOCKED"
        ),
        {"limit": limit},
    ).all()
    out = []
    for run_id, campaign_id, messages, config in rows:
        cfg = CampaignConfig.model_validate(config)
        session.execute(
            text("UPDATE run SET status = 'running', started_at = now() WHERE id = :id"), {"id": run_id}
        )
        publish = create_round(session, cfg, campaign_id, run_id, 1, cfg.schedule[0], messages)
        if publish:
            out.append(publish)
    return out


def create_round(
    session: Session,
    cfg: CampaignConfig,
    campaign_id: int,
    run_id: int,
    index: int,
    k: int,
    messages: list[dict[str, Any]],
) -> Publish | None:
    """The round and its K trajectory rows; idempotent on (run, index): None if it already exists."""
    round_id = session.execute(
        text(
            "INSERT INTO round (run_id, index, k, input_messages) VALUES (:run, :index, :k, CAST(:messages AS jsonb)) "
            "ON CONFLICT (run_id, index) DO NOTHING RETURNING id"
        ),
        {"run": run_id, "index": index, "k": k, "messages": _json(messages)},
    ).scalar()
    if round_id is None:
        return None
    ids = session.execute(
        text(
            "INSERT INTO trajectory (campaign_id, round_id, index, sampling_seed) "
            "SELECT :campaign, :round, i, (CAST(:seeds AS jsonb) ->> i)::bigint FROM generate_series(0, :last) AS i "
            "ORDER BY i RETURNING id, index"
        ),
        {
            "campaign": campaign_id,
            "round": round_id,
            "last": k - 1,
            "seeds": _json([cfg.sampling_seed(run_id, index, i) for i in range(k)]),
        },
    ).all()
    session.execute(
        text(
            "INSERT INTO round_trajectory (round_id, position, trajectory_id) "
            "SELECT :round, t.index, t.id FROM trajectory t WHERE t.round_id = :round"
        ),
        {"round": round_id},
    )
    return Publish(round_id, cfg.model, [(tid, 1) for tid, _ in sorted(ids, key=lambda r: r[1])])


def advance_round(session: Session, round_id: int) -> Publish | None:
    """Advance a round exactly once: the guarded UPDATE decides who wins; the winner compacts, then
    creates the next round or finishes the run, all in this transaction."""
    won = session.execute(
        text(
            "UPDATE round SET status = 'done', finished_at = now() WHERE id = :id AND status = 'generating' "
            "AND NOT EXISTS (SELECT 1 FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id "
            "WHERE rt.round_id = :id AND t.status IN ('pending', 'running')) RETURNING run_id, index"
        ),
        {"id": round_id},
    ).first()
    if won is None:
        return None
    run_id, index = won
    campaign_id, messages, config = session.execute(
        text(
            "SELECT run.campaign_id, p.messages, c.config FROM run JOIN problem p ON p.id = run.problem_id "
            "JOIN campaign c ON c.id = run.campaign_id WHERE run.id = :run"
        ),
        {"run": run_id},
    ).one()
    cfg = CampaignConfig.model_validate(config)
    outcomes, ids = _outcomes(session, round_id)
    _store_messages(session, outcomes, ids, cfg.pass_truncated)
    decision = after_round(cfg.schedule, index, messages, outcomes, cfg.seed, cfg.pass_truncated)
    session.execute(
        text("UPDATE round SET message_order = CAST(:order AS jsonb), decision = :reason WHERE id = :id"),
        {"order": _json(decision.order), "reason": decision.reason, "id": round_id},
    )
    if decision.kind == "next_round":
        assert decision.next_k is not None and decision.next_messages is not None
        return create_round(
            session, cfg, campaign_id, run_id, index + 1, decision.next_k, decision.next_messages
        )
    if decision.kind == "fail":
        session.execute(text("UPDATE round SET status = 'failed' WHERE id = :id"), {"id": round_id})
    _finish_run(session, run_id, campaign_id, decision.kind, decision.reason, decision.answer)
    return None


def _outcomes(session: Session, round_id: int) -> tuple[list[Outcome], dict[int, int]]:
    rows = session.execute(
        text(
            "SELECT rt.position, t.id, t.status, t.content, t.reasoning, t.finish_reason FROM round_trajectory rt "
            "JOIN trajectory t ON t.id = rt.trajectory_id WHERE rt.round_id = :id ORDER BY rt.position"
        ),
        {"id": round_id},
    ).all()
    outcomes = [
        Outcome(pos, status, content, reasoning, finish)
        for pos, _, status, content, reasoning, finish in rows
    ]
    return outcomes, {row[0]: row[1] for row in rows}


def _store_messages(
    session: Session, outcomes: list[Outcome], ids: dict[int, int], pass_truncated: bool
) -> None:
    values = [{"id": ids[o.index], "message": compact(o, pass_truncated)} for o in outcomes]
    session.execute(text("UPDATE trajectory SET message = :message WHERE id = :id"), values)


def _finish_run(
    session: Session, run_id: int, campaign_id: int, kind: str, reason: str, final_message: str | None
) -> None:
    session.execute(
        text(
            "UPDATE run SET status = :status, reason = :reason, final_message = :message, answer = :answer, "
            "finished_at = now() WHERE id = :id"
        ),
        {
            "status": "done" if kind == "finish" else "failed",
            "reason": reason,
            "message": final_message,
            "answer": extract_boxed(final_message),
            "id": run_id,
        },
    )
    finish_campaign_if_done(session, campaign_id)


def finish_campaign_if_done(session: Session, campaign_id: int) -> None:
    """Mark the campaign done when no run is left. The row lock comes first: two runs finishing at once
    would otherwise each still see the other running (READ COMMITTED) and neither would finish it."""
    session.execute(text("SELECT 1 FROM campaign WHERE id = :id FOR UPDATE"), {"id": campaign_id})
    session.execute(
        text(
            "UPDATE campaign SET status = 'done', finished_at = now() WHERE id = :id AND status = 'active' "
            "AND NOT EXISTS (SELECT 1 FROM run WHERE campaign_id = :id AND status IN ('pending', 'running'))"
        ),
        {"id": campaign_id},
    )


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
