"""What `pacore status` shows: per campaign, problems, runs and trajectories by status, and tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
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


def _counts(session: Session, column: Any, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    table = column.class_
    rows = session.execute(
        select(table.campaign_id, column, func.count())
        .where(table.campaign_id.in_(campaign_ids))
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
    runs = _counts(session, Run.status, ids)
    trajectories = _counts(session, Trajectory.status, ids)
    return [
        {
            "id": c.id,
            "name": c.name,
            "status": c.status,
            "created_at": c.created_at.isoformat(),
            "problems": problems.get(c.id, 0),
            "runs": {"total": sum(runs[c.id].values()), **runs[c.id]},
            "trajectories": {"total": sum(trajectories[c.id].values()), **trajectories[c.id]},
            "tokens": {
                "used": c.tokens_used,
                "reserved": c.tokens_reserved,
                "prompt": c.prompt_tokens,
                "campaign_budget": c.campaign_budget,
                "problem_budget": c.problem_budget,
            },
            "config": c.config,
        }
        for c in campaigns
    ]
