"""What `pacore status` shows: per campaign, problems, runs and trajectories by status, and tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from pacore.models import Campaign, Problem, Run, Trajectory


class UnknownCampaign(LookupError):
    pass


def find_campaign(session: Session, name: str) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        known = session.scalars(select(Campaign.name).order_by(Campaign.id.desc()).limit(5)).all()
        hint = f" (recent campaigns: {', '.join(known)})" if known else " (there are no campaigns yet)"
        raise UnknownCampaign(f"no campaign named {name!r}{hint}; `pacore status` lists them")
    return campaign


def _counts(session: Session, column: Any, campaign_ids: list[int], *where: Any) -> dict[int, dict[str, int]]:
    table = column.class_
    rows = session.execute(
        select(table.campaign_id, column, func.count())
        .where(table.campaign_id.in_(campaign_ids), *where)
        .group_by(table.campaign_id, column)
    )
    out: dict[int, dict[str, int]] = {cid: {} for cid in campaign_ids}
    for cid, status, n in rows:
        out[cid][status] = n
    return out


def summaries(session: Session, name: str | None = None) -> list[dict[str, Any]]:
    campaigns = (
        [find_campaign(session, name)]
        if name
        else list(session.scalars(select(Campaign).order_by(Campaign.id)))
    )
    ids = [c.id for c in campaigns if c.id is not None]
    problems = dict(
        session.execute(
            select(Problem.campaign_id, func.count())
            .where(Problem.campaign_id.in_(ids))
            .group_by(Problem.campaign_id)
        ).all()
    )
    runs = _counts(session, Run.status, ids, Run.sample >= 0)
    pools = _counts(session, Run.status, ids, Run.sample < 0)
    trajectories = _counts(session, Trajectory.status, ids)
    live = {row[0]: row[1:] for row in session.execute(_LIVE_TOKENS, {"ids": ids})}
    decisions = budget_decisions(session, ids)
    return [
        _summary(c, problems.get(c.id, 0), runs[c.id], trajectories[c.id], live.get(c.id, (0, 0, 0, 0)))
        | {"budget_decisions": decisions.get(c.id, {})}
        | ({"pool_runs": {"total": sum(pools[c.id].values()), **pools[c.id]}} if pools[c.id] else {})
        for c in campaigns
    ]


# What the budget policy did, by kind (pacore/core/policy.py words each reason this way).
_DECISION_KINDS = {
    "K shrunk": "k_shrunk",
    "skipped to the final round": "skipped_to_final",
    "max_tokens shrunk": "max_tokens_shrunk",
    "budget exhausted": "exhausted",
}


def budget_decisions(session: Session, ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Per campaign and kind: how many rounds or runs the policy changed, and one example reason."""
    rows = session.execute(
        text(
            "SELECT run.campaign_id, r.plan_reason FROM round r JOIN run ON run.id = r.run_id "
            "WHERE run.campaign_id = ANY(:ids) AND (r.plan_reason LIKE '%shrunk%' OR r.plan_reason LIKE '%skipped%') "
            "UNION ALL SELECT campaign_id, reason FROM run WHERE campaign_id = ANY(:ids) AND status = 'budget_exhausted'"
        ),
        {"ids": ids},
    ).all()
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for campaign_id, reason in rows:
        kind = next((k for phrase, k in _DECISION_KINDS.items() if phrase in (reason or "")), "other")
        entry = out.setdefault(campaign_id, {}).setdefault(kind, {"count": 0, "example": reason})
        entry["count"] += 1
    return out


# Per campaign: tokens used (all settled attempts, waste included), wasted, prompt, and used by runs still
# going (their grants are counted in campaign.tokens_reserved, their usage not yet in tokens_used).
_LIVE_TOKENS = text(
    "SELECT campaign_id, sum(tokens_used), sum(tokens_wasted), sum(prompt_tokens), "
    "coalesce(sum(tokens_used) FILTER (WHERE status IN ('pending', 'running')), 0) "
    "FROM run WHERE campaign_id = ANY(:ids) GROUP BY campaign_id"
)


def _summary(
    c: Campaign, problems: int, runs: dict[str, int], trajectories: dict[str, int], live: tuple[int, ...]
) -> dict[str, Any]:
    used, wasted, prompt, used_by_unfinished = (int(v) for v in live)
    return {
        "id": c.id,
        "name": c.name,
        "status": c.status,
        "created_at": c.created_at.isoformat(),
        "problems": problems,
        "runs": {"total": sum(runs.values()), **runs},
        "trajectories": {"total": sum(trajectories.values()), **trajectories},
        "tokens": {
            "used": used,  # completion tokens of every settled attempt (TTC), waste included
            "reserved": c.tokens_reserved - used_by_unfinished,  # held by unfinished runs, not yet used
            "wasted": wasted,  # failed tries, failed and preempted attempts
            "prompt": prompt,
            "campaign_budget": c.campaign_budget,  # used + reserved <= campaign_budget, always
            "problem_budget": c.problem_budget,
        },
        "config": c.config,
    }


def set_campaign_budget(session: Session, name: str, limit: int | None) -> tuple[int, int]:
    """Set the campaign budget (under the campaign row lock that every grant takes); returns the
    campaign's (used, reserved) at that moment."""
    campaign = find_campaign(session, name)
    session.execute(text("SELECT 1 FROM campaign WHERE id = :id FOR NO KEY UPDATE"), {"id": campaign.id})
    session.execute(
        text("UPDATE campaign SET campaign_budget = :b WHERE id = :id"), {"b": limit, "id": campaign.id}
    )
    tokens = summaries(session, name)[0]["tokens"]
    return tokens["used"], tokens["reserved"]


def lift_quarantine(session: Session, name: str) -> list[tuple[int, str | None]]:
    """Put the campaign's quarantined runs back to work: their pending trajectories are published
    again by the scheduler's next tick, and only engine deaths after now count toward a new
    quarantine. Returns the (run id, quarantine reason) pairs lifted."""
    campaign = find_campaign(session, name)
    lifted = session.execute(
        text(
            "UPDATE run SET status = 'running', quarantine_lifted_at = now(), reason = NULL "
            "FROM (SELECT id, reason FROM run WHERE campaign_id = :cid AND status = 'quarantined' "
            "FOR NO KEY UPDATE) old WHERE run.id = old.id RETURNING run.id, old.reason"
        ),
        {"cid": campaign.id},
    ).all()
    session.execute(
        text(
            "UPDATE trajectory t SET published_at = NULL FROM round r WHERE r.id = t.round_id "
            "AND r.run_id = ANY(:runs) AND t.status = 'pending'"
        ),
        {"runs": [run_id for run_id, _ in lifted]},
    )
    return [(run_id, reason) for run_id, reason in lifted]


def problem_detail(session: Session, name: str, problem_id: str) -> dict[str, Any]:
    """One problem of a campaign: its runs, their rounds and every trajectory."""
    campaign = find_campaign(session, name)
    problem = session.execute(
        text("SELECT id, ground_truth FROM problem WHERE campaign_id = :c AND external_id = :p"),
        {"c": campaign.id, "p": problem_id},
    ).first()
    if problem is None:
        known = session.execute(
            text("SELECT external_id FROM problem WHERE campaign_id = :c ORDER BY line LIMIT 5"),
            {"c": campaign.id},
        ).scalars()
        raise UnknownCampaign(
            f"campaign {name!r} has no problem {problem_id!r} (its first problems: {', '.join(known)})"
        )
    rows = session.execute(
        text(
            "SELECT run.id, run.sample, run.status, run.reason, run.answer, run.tokens_used, r.index, r.k, "
            "r.status, r.plan_reason, t.index, t.status, t.attempt, t.finish_reason, t.completion_tokens, "
            "t.message, t.error FROM run LEFT JOIN round r ON r.run_id = run.id "
            "LEFT JOIN round_trajectory rt ON rt.round_id = r.id LEFT JOIN trajectory t ON t.id = rt.trajectory_id "
            "WHERE run.problem_id = :p AND run.sample >= 0 ORDER BY run.sample, r.index, rt.position"
        ),
        {"p": problem[0]},
    ).all()
    runs: dict[int, dict[str, Any]] = {}
    for run_id, sample, status, reason, answer, used, index, k, r_status, plan, *traj in rows:
        run = runs.setdefault(
            run_id,
            {
                "sample": sample,
                "status": status,
                "reason": reason,
                "answer": answer,
                "tokens": used,
                "rounds": [],
            },
        )
        if index is None:
            continue
        if not run["rounds"] or run["rounds"][-1]["index"] != index:
            run["rounds"].append(
                {"index": index, "k": k, "status": r_status, "plan": plan, "trajectories": []}
            )
        t_index, t_status, attempt, finish, tokens, message, error = traj
        if t_index is not None:
            run["rounds"][-1]["trajectories"].append(
                {
                    "index": t_index,
                    "status": t_status,
                    "attempt": attempt,
                    "finish_reason": finish,
                    "completion_tokens": tokens,
                    "message": message,
                    "note": error,
                }
            )
    return {
        "campaign": name,
        "problem_id": problem_id,
        "ground_truth": problem[1],
        "runs": list(runs.values()),
    }


def live_view(session: Session, name: str) -> dict[str, Any]:
    """What `pacore status --watch` shows besides the summary: rounds by index and status, live
    workers, tokens settled so far (for throughput), and a projection of tokens to finish."""
    summary = summaries(session, name)[0]
    cid = summary["id"]
    rounds = session.execute(
        text(
            "SELECT r.index, r.status, count(*) FROM round r JOIN run ON run.id = r.run_id "
            "WHERE run.campaign_id = :c GROUP BY 1, 2 ORDER BY 1"
        ),
        {"c": cid},
    ).all()
    per_round: dict[int, dict[str, int]] = {}
    for index, status, n in rounds:
        per_round.setdefault(index, {})[status] = n
    workers = session.execute(
        text(
            "SELECT count(*), coalesce(sum(concurrency), 0) FROM worker WHERE status = 'up' "
            "AND heartbeat_at > now() - interval '60 seconds' AND model = :m"
        ),
        {"m": summary["config"]["model"]},
    ).one()
    finished_tokens = session.execute(
        text(
            "SELECT count(*), coalesce(avg(tokens_used), 0) FROM run WHERE campaign_id = :c "
            "AND status IN ('done', 'budget_exhausted')"
        ),
        {"c": cid},
    ).one()
    runs = summary["runs"]
    left = runs.get("pending", 0) + runs.get("running", 0)
    settled = session.execute(
        text(
            "SELECT coalesce(sum(a.completion_tokens), 0) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
            "WHERE t.campaign_id = :c"
        ),
        {"c": cid},
    ).scalar_one()
    return {
        **summary,
        "rounds_by_index": per_round,
        "live_workers": int(workers[0]),
        "live_slots": int(workers[1]),
        "settled_tokens": int(settled),
        # Finished runs so far say what a run costs; the runs left will cost about as much.
        "projected_tokens_left": int(left * float(finished_tokens[1])) if finished_tokens[0] else None,
    }
