"""Writing rounds: starting runs, planning and creating a round with its trajectories, and advancing a
finished round.

Every function takes an open session and leaves committing to the caller, so that each decision and
its writes land in one transaction (ARCHITECTURE.md §3 rule 3). Messages are published after commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore import tokens
from pacore.core.answers import extract_boxed
from pacore.core.campaign import CampaignConfig
from pacore.core.compaction import Outcome, reference
from pacore.core.policy import RoundPlan, plan_round
from pacore.core.rounds import after_round
from pacore.settings import Settings
from scheduler.admission import Admission


@dataclass(frozen=True)
class Publish:
    """A chord to publish after commit: these (trajectory id, attempt) pairs, then complete_round."""

    round_id: int
    model: str
    trajectories: list[tuple[int, int]]


@dataclass(frozen=True)
class RunContext:
    run_id: int
    campaign_id: int
    cfg: CampaignConfig
    messages: list[dict[str, Any]]


def start_runs(
    session: Session,
    settings: Settings,
    limit: int,
    admission: Admission | None = None,
) -> list[Publish]:
    """Plan and create round 1 for up to `limit` pending runs of active campaigns, round-robin across
    campaigns (each campaign's runs in order; the turn goes on from the campaign served last). With
    admission control, only runs whose round 1 fits the room left are started."""
    after = admission.last_campaign if admission is not None else 0
    candidates = (
        session.execute(
            text(
                "SELECT pending.id FROM campaign c CROSS JOIN LATERAL (SELECT run.id, row_number() OVER (ORDER BY run.id) AS rank "
                "FROM run WHERE run.campaign_id = c.id AND run.status = 'pending' ORDER BY run.id LIMIT :limit) pending "
                "WHERE c.status = 'active' ORDER BY pending.rank, c.id <= :after, c.id LIMIT :limit"
            ),
            {"limit": limit, "after": after},
        )
        .scalars()
        .all()
    )
    locked = session.execute(
        text(
            "SELECT run.id, run.campaign_id, c.config, p.messages FROM run "
            "JOIN problem p ON p.id = run.problem_id JOIN campaign c ON c.id = run.campaign_id "
            "WHERE run.id = ANY(:ids) AND run.status = 'pending' FOR NO KEY UPDATE OF run SKIP LOCKED"
        ),
        {"ids": list(candidates)},
    ).all()
    by_id = {row[0]: row for row in locked}
    rows = [by_id[i] for i in candidates if i in by_id]  # round-robin order
    out: list[Publish] = []
    for run_id, campaign_id, config, messages in rows:
        run = RunContext(run_id, campaign_id, CampaignConfig.model_validate(config), messages)
        if admission is not None and admission.left() < run.cfg.rounds[0]:
            break  # no room: a later tick starts it
        session.execute(
            text("UPDATE run SET status = 'running', started_at = now() WHERE id = :id"), {"id": run_id}
        )
        created = (
            _start_from_pool(session, run)
            if run.cfg.pool
            else [p for p in [next_round(session, settings, run, 1, messages, gathered=0)] if p]
        )
        if admission is not None:
            admission.last_campaign = campaign_id
            if not admission.take(sum(len(p.trajectories) for p in created)):
                break  # a new pool larger than the room: created, published by a later tick
        out.extend(created)
    return out


# -- the round-1 pool (`--pool N`) -------------------------------------------------------------------
#
# A pool is the round 1 of a pool run (sample -1) of a problem: N trajectories generated once. A run's
# round 1 generates nothing of its own: it links K1 of the pool's trajectories (seeded sample, without
# replacement) and advances when they are all finished (the dispatch tick advances rounds whose linked
# trajectories are done). A campaign with the same problem text, model and sampling reuses a pool of at
# least its N from any campaign. Pool tokens are spent, and counted in `used`, once: by the campaign
# whose pool run generated them; reports count, per run, the tokens of every trajectory its rounds use.


def _start_from_pool(session: Session, run: RunContext) -> list[Publish]:
    pool_round, publish = _pool_round(session, run)
    assert run.cfg.pool is not None
    positions = run.cfg.pool_sample(run.run_id)
    k = run.cfg.rounds[0]
    reason = f"round 1: K={k} sampled from a pool of {run.cfg.pool} (round {pool_round})"
    round_id = session.execute(
        text(
            "INSERT INTO round (run_id, index, k, is_final, max_tokens, input_messages, plan_reason) "
            "VALUES (:run, 1, :k, false, :max_tokens, CAST(:messages AS json), :reason) "
            "ON CONFLICT (run_id, index) DO NOTHING RETURNING id"
        ),
        {
            "run": run.run_id,
            "k": k,
            "max_tokens": run.cfg.max_tokens,
            "messages": json.dumps(run.messages),
            "reason": reason,
        },
    ).scalar()
    if round_id is not None:
        session.execute(
            text(
                "INSERT INTO round_trajectory (round_id, position, trajectory_id) "
                "SELECT :round, s.position - 1, t.id FROM unnest(CAST(:indices AS int[])) WITH ORDINALITY "
                "AS s(pool_index, position) JOIN trajectory t ON t.round_id = :pool AND t.index = s.pool_index"
            ),
            {"round": round_id, "indices": positions, "pool": pool_round},
        )
    return [publish] if publish else []


def _pool_round(session: Session, run: RunContext) -> tuple[int, Publish | None]:
    """The round holding this problem's pool: an existing one at least N large with the same problem
    text, model and sampling (this campaign's first), else a new pool run's round 1."""
    cfg = run.cfg
    assert cfg.pool is not None
    found = session.execute(
        text(
            "SELECT r.id FROM run pr JOIN problem p ON p.id = pr.problem_id JOIN campaign c ON c.id = pr.campaign_id "
            "JOIN round r ON r.run_id = pr.id AND r.index = 1 "
            "WHERE pr.sample = -1 AND pr.status IN ('running', 'done') AND r.k >= :n "
            "AND p.messages::jsonb = CAST(:messages AS jsonb) AND c.config ->> 'model' = :model "
            "AND (c.config ->> 'temperature')::float = :temperature AND (c.config ->> 'top_p')::float = :top_p "
            "AND coalesce(c.config ->> 'max_tokens', '') = :max_tokens "
            "ORDER BY (pr.campaign_id = :campaign) DESC, r.id LIMIT 1"
        ),
        {
            "n": cfg.pool,
            "messages": json.dumps(run.messages),
            "model": cfg.model,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_tokens": "" if cfg.max_tokens is None else str(cfg.max_tokens),
            "campaign": run.campaign_id,
        },
    ).scalar()
    if found is not None:
        return int(found), None
    pool_run = session.execute(
        text(
            "INSERT INTO run (campaign_id, problem_id, sample, status, reason, started_at) "
            "SELECT campaign_id, problem_id, -1, 'running', :reason, now() FROM run WHERE id = :run "
            "ON CONFLICT (problem_id, sample) DO NOTHING RETURNING id"
        ),
        {"run": run.run_id, "reason": f"round-1 pool of {cfg.pool}"},
    ).scalar()
    if pool_run is None:  # this campaign's pool of the problem exists (made by an earlier start)
        existing = session.execute(
            text(
                "SELECT r.id FROM run pr JOIN run me ON me.problem_id = pr.problem_id AND me.id = :run "
                "JOIN round r ON r.run_id = pr.id AND r.index = 1 WHERE pr.sample = -1"
            ),
            {"run": run.run_id},
        ).scalar_one()
        return int(existing), None
    pool = RunContext(int(pool_run), run.campaign_id, cfg, run.messages)
    plan = RoundPlan("start", cfg.pool, False, cfg.max_tokens, f"round-1 pool of {cfg.pool} trajectories")
    publish = create_round(session, pool, 1, plan, run.messages)
    assert publish is not None
    return publish.round_id, publish


def next_round(
    session: Session,
    settings: Settings,
    run: RunContext,
    index: int,
    messages: list[dict[str, Any]],
    gathered: int,
) -> Publish | None:
    """Plan round `index` against the budget left, then create it, or end the run when nothing fits."""
    estimate = _estimate(session, run, settings)
    room = tokens.room(session, run.run_id, run.campaign_id)
    plan = plan_round(
        run.cfg.schedule, index, room, estimate, run.cfg.max_tokens, gathered, settings.min_trajectory_tokens
    )
    if plan.action == "exhausted":
        _finish_run(session, run, "budget_exhausted", plan.reason, None)
        return None
    return create_round(session, run, index, plan, messages)


def _estimate(session: Session, run: RunContext, settings: Settings) -> int:
    """Expected tokens of one trajectory: this run's mean so far, else a block (the reservation unit)."""
    mean = session.execute(
        text(
            "SELECT avg(t.completion_tokens) FROM trajectory t JOIN round r ON r.id = t.round_id "
            "WHERE r.run_id = :run AND t.status = 'done'"
        ),
        {"run": run.run_id},
    ).scalar()
    default = min(run.cfg.max_tokens or settings.token_block, settings.token_block)
    return int(mean) if mean else default


def create_round(
    session: Session, run: RunContext, index: int, plan: RoundPlan, messages: list[dict[str, Any]]
) -> Publish | None:
    """The round and its K trajectory rows; idempotent on (run, index): None if it already exists."""
    round_id = session.execute(
        text(
            "INSERT INTO round (run_id, index, k, is_final, max_tokens, input_messages, plan_reason) "
            "VALUES (:run, :index, :k, :final, :max_tokens, CAST(:messages AS json), :reason) "
            "ON CONFLICT (run_id, index) DO NOTHING RETURNING id"
        ),
        {
            "run": run.run_id,
            "index": index,
            "k": plan.k,
            "final": plan.is_final,
            "max_tokens": plan.max_tokens,
            "messages": json.dumps(messages),
            "reason": plan.reason,
        },
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
            "campaign": run.campaign_id,
            "round": round_id,
            "last": plan.k - 1,
            "seeds": json.dumps([run.cfg.sampling_seed(run.run_id, index, i) for i in range(plan.k)]),
        },
    ).all()
    session.execute(
        text(
            "INSERT INTO round_trajectory (round_id, position, trajectory_id) "
            "SELECT :round, t.index, t.id FROM trajectory t WHERE t.round_id = :round"
        ),
        {"round": round_id},
    )
    return Publish(round_id, run.cfg.model, [(tid, 1) for tid, _ in sorted(ids, key=lambda r: r[1])])


def advance_round(session: Session, settings: Settings, round_id: int) -> Publish | None:
    """Advance a round exactly once: the guarded UPDATE decides who wins; the winner compacts, then
    creates the next round or finishes the run, all in this transaction."""
    won = session.execute(
        text(
            "UPDATE round SET status = 'done', finished_at = now() WHERE id = :id AND status = 'generating' "
            "AND NOT EXISTS (SELECT 1 FROM round_trajectory rt JOIN trajectory t ON t.id = rt.trajectory_id "
            "WHERE rt.round_id = :id AND t.status IN ('pending', 'running')) RETURNING run_id, index, is_final"
        ),
        {"id": round_id},
    ).first()
    if won is None:
        return None
    run_id, index, is_final = won
    campaign_id, config, messages, sample = session.execute(
        text(
            "SELECT run.campaign_id, c.config, p.messages, run.sample FROM run JOIN problem p ON p.id = run.problem_id "
            "JOIN campaign c ON c.id = run.campaign_id WHERE run.id = :run"
        ),
        {"run": run_id},
    ).one()
    run = RunContext(run_id, campaign_id, CampaignConfig.model_validate(config), messages)
    outcomes, ids = _outcomes(session, round_id)
    _store_messages(session, outcomes, ids, run.cfg.pass_truncated)
    if sample < 0:  # a pool run: its round 1 is all it does; the runs that use it advance on their own
        done = sum(o.status == "done" for o in outcomes)
        _finish_run(session, run, "done", f"round-1 pool: {done} of {len(outcomes)} trajectories done", None)
        return None
    next_k = None if is_final else run.cfg.schedule[index]
    decision = after_round(next_k, index, messages, outcomes, run.cfg.seed, run.cfg.pass_truncated)
    session.execute(
        text(
            "UPDATE round SET response_order = CAST(:order AS jsonb), finish_order = CAST(:finished AS jsonb), "
            "decision = :reason WHERE id = :id"
        ),
        {
            "order": json.dumps(decision.order),
            "finished": json.dumps(decision.finish_order),
            "reason": decision.reason,
            "id": round_id,
        },
    )
    if decision.kind == "next_round":
        assert decision.next_messages is not None
        gathered = len(decision.references)
        return next_round(session, settings, run, index + 1, decision.next_messages, gathered)
    if decision.kind == "fail":
        session.execute(text("UPDATE round SET status = 'failed' WHERE id = :id"), {"id": round_id})
    status = "done" if decision.kind == "finish" else "failed"
    _finish_run(session, run, status, decision.reason, decision.answer)
    return None


def _outcomes(session: Session, round_id: int) -> tuple[list[Outcome], dict[int, int]]:
    """The round's outcomes in completion order: by `finish_seq`, stamped by each fenced result write
    from one sequence. A round drawn from a round-1 pool takes its sample order (its trajectories are
    another round's); rows finished before `finish_seq` existed fall back to position order."""
    rows = session.execute(
        text(
            "SELECT rt.position, t.id, t.status, t.content, t.reasoning, t.finish_reason FROM round_trajectory rt "
            "JOIN trajectory t ON t.id = rt.trajectory_id WHERE rt.round_id = :id "
            "ORDER BY CASE WHEN t.round_id = rt.round_id THEN t.finish_seq END NULLS LAST, rt.position"
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
    values = [{"id": ids[o.index], "message": reference(o, pass_truncated)} for o in outcomes]
    session.execute(text("UPDATE trajectory SET message = :message WHERE id = :id"), values)


def _finish_run(
    session: Session, run: RunContext, status: str, reason: str, final_message: str | None
) -> None:
    session.execute(
        text(
            "UPDATE run SET status = :status, reason = :reason, final_message = :message, answer = :answer, "
            "finished_at = now() WHERE id = :id"
        ),
        {
            "status": status,
            "reason": reason,
            "message": final_message,
            "answer": extract_boxed(final_message),
            "id": run.run_id,
        },
    )
    tokens.finish_run(session, run.run_id, run.campaign_id)
    finish_campaign_if_done(session, run.campaign_id)


def finish_campaign_if_done(session: Session, campaign_id: int) -> None:
    """Mark the campaign done when no run is left. The row lock comes first: two runs finishing at once
    would otherwise each still see the other running (READ COMMITTED) and neither would finish it."""
    session.execute(text("SELECT 1 FROM campaign WHERE id = :id FOR NO KEY UPDATE"), {"id": campaign_id})
    session.execute(
        text(
            "UPDATE campaign SET status = 'done', finished_at = now() WHERE id = :id AND status = 'active' "
            "AND NOT EXISTS (SELECT 1 FROM run WHERE campaign_id = :id AND status IN ('pending', 'running'))"
        ),
        {"id": campaign_id},
    )
