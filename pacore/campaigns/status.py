"""What `pacore status` shows: per campaign, problems, runs and trajectories by status, and tokens.
Reads only; changes are `pacore.campaigns.control`'s."""

from __future__ import annotations

from typing import Any

from pacore.campaigns.fleet import waiting_note
from pacore.core.vocabulary import CampaignStatus, RunStatus
from pacore.store.campaigns import CampaignRow, LiveTokens
from pacore.store.fleet import ModelFleet
from pacore.store.store import Store


class UnknownCampaign(LookupError):
    pass


def find_campaign(store: Store, name: str) -> CampaignRow:
    campaign = store.campaign_by_name(name)
    if campaign is None:
        known = store.recent_campaign_names()
        hint = f" (recent campaigns: {', '.join(known)})" if known else " (there are no campaigns yet)"
        raise UnknownCampaign(f"no campaign named {name!r}{hint}; `pacore status` lists them")
    return campaign


def summaries(
    store: Store, name: str | None = None, fleet: list[ModelFleet] | None = None
) -> list[dict[str, Any]]:
    """`fleet`: the live fleet per model, when the caller has read it already."""
    campaigns = [find_campaign(store, name)] if name else store.all_campaigns()
    ids = [c.id for c in campaigns]
    problems = store.problem_counts(ids)
    runs = store.run_status_counts(ids)
    pools = store.run_status_counts(ids, pools=True)
    trajectories = store.trajectory_status_counts(ids)
    live = store.live_tokens(ids)
    decisions = budget_decisions(store, ids)
    fleet = store.fleet_by_model() if fleet is None else fleet
    expired = store.expired_leases(ids)
    return [
        _summary(c, problems.get(c.id, 0), runs[c.id], trajectories[c.id], live.get(c.id))
        | {"budget_decisions": decisions.get(c.id, {})}
        | _fleet_view(c, fleet, expired.get(c.id))
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


def budget_decisions(store: Store, ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Per campaign and kind: how many rounds or runs the policy changed, and one example reason."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for campaign_id, reason in store.budget_decision_reasons(ids):
        kind = next((k for phrase, k in _DECISION_KINDS.items() if phrase in (reason or "")), "other")
        entry = out.setdefault(campaign_id, {}).setdefault(kind, {"count": 0, "example": reason})
        entry["count"] += 1
    return out


def _summary(
    c: CampaignRow,
    problems: int,
    runs: dict[str, int],
    trajectories: dict[str, int],
    live: LiveTokens | None,
) -> dict[str, Any]:
    used, wasted, prompt, reserved = (
        (int(live.used), int(live.wasted), int(live.prompt), int(live.reserved)) if live else (0, 0, 0, 0)
    )
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
            "reserved": reserved,  # granted to unfinished runs, not yet used
            "wasted": wasted,  # failed tries, failed and preempted attempts
            "prompt": prompt,
            "campaign_budget": c.campaign_budget,  # used + reserved <= campaign_budget, always
            "problem_budget": c.problem_budget,
        },
        "config": c.config,
    }


def _fleet_view(c: CampaignRow, fleet: list[ModelFleet], expired: tuple[int, float] | None) -> dict[str, Any]:
    """The live fleet of the campaign's model, why an active campaign waits for it (None: it does not),
    and its trajectories whose worker stopped beating (the reconciler re-drives them)."""
    model = c.config["model"]
    entry = next((f for f in fleet if f.model == model), None)
    active = c.status not in (CampaignStatus.DONE, CampaignStatus.CANCELLED)
    return {
        "model": model,
        "fleet": {
            "live_workers": entry.workers if entry else 0,
            "slots": entry.slots if entry else 0,
            "engines_down": entry.engines_down if entry else 0,
        },
        "waiting_for": waiting_note(model, fleet) if active else None,
        "leases_expired": {"trajectories": expired[0], "oldest_seconds": round(expired[1], 1)}
        if expired
        else None,
    }


def problem_detail(store: Store, name: str, problem_id: str) -> dict[str, Any]:
    """One problem of a campaign: its runs, their rounds and every trajectory."""
    campaign = find_campaign(store, name)
    problem = store.find_problem(campaign.id, problem_id)
    if problem is None:
        known = store.first_problem_ids(campaign.id)
        raise UnknownCampaign(
            f"campaign {name!r} has no problem {problem_id!r} (its first problems: {', '.join(known)})"
        )
    problem_row, ground_truth = problem
    runs: dict[int, dict[str, Any]] = {}
    for row in store.problem_trajectories(problem_row):
        run = runs.setdefault(
            row.run_id,
            {
                "sample": row.sample,
                "status": row.status,
                "reason": row.reason,
                "answer": row.answer,
                "tokens": row.tokens,
                "rounds": [],
            },
        )
        if row.round_index is None:
            continue
        if not run["rounds"] or run["rounds"][-1]["index"] != row.round_index:
            run["rounds"].append(
                {
                    "index": row.round_index,
                    "k": row.k,
                    "status": row.round_status,
                    "plan": row.plan,
                    "trajectories": [],
                }
            )
        if row.trajectory_index is not None:
            run["rounds"][-1]["trajectories"].append(
                {
                    "index": row.trajectory_index,
                    "status": row.trajectory_status,
                    "attempt": row.attempt,
                    "finish_reason": row.finish_reason,
                    "completion_tokens": row.completion_tokens,
                    "message": row.message,
                    "note": row.note,
                }
            )
    return {
        "campaign": name,
        "problem_id": problem_id,
        "ground_truth": ground_truth,
        "runs": list(runs.values()),
    }


def live_view(store: Store, name: str) -> dict[str, Any]:
    """What `pacore status --watch` shows besides the summary: rounds by index and status, live
    workers, tokens settled so far (for throughput), and a projection of tokens to finish."""
    summary = summaries(store, name)[0]
    cid = summary["id"]
    finished, mean_tokens = store.finished_run_cost(cid)
    runs = summary["runs"]
    left = runs.get(RunStatus.PENDING, 0) + runs.get(RunStatus.RUNNING, 0)
    return {
        **summary,
        "rounds_by_index": store.rounds_by_index_and_status(cid),
        "live_workers": summary["fleet"]["live_workers"],
        "live_slots": summary["fleet"]["slots"],
        "settled_tokens": store.settled_tokens(cid),
        # Finished runs so far say what a run costs; the runs left will cost about as much.
        "projected_tokens_left": int(left * mean_tokens) if finished else None,
    }
