"""Queries of campaigns as operators see and steer them: lookup, submit, status, control."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Json, Jsonb

from pacore.store.base import StoreBase
from pacore.store.queries import load


@dataclass(frozen=True)
class CampaignRow:
    id: int
    name: str
    status: str
    config: dict[str, Any]
    created_at: datetime
    campaign_budget: int | None
    problem_budget: int | None


@dataclass(frozen=True)
class LiveTokens:
    campaign_id: int
    used: int
    wasted: int
    prompt: int
    reserved: int  # granted to runs that have not ended, not yet used


@dataclass(frozen=True)
class ProblemTrajectoryRow:
    run_id: int
    sample: int
    status: str
    reason: str | None
    answer: str | None
    tokens: int
    round_index: int | None
    k: int | None
    round_status: str | None
    plan: str | None
    trajectory_index: int | None
    trajectory_status: str | None
    attempt: int | None
    finish_reason: str | None
    completion_tokens: int | None
    message: str | None
    note: str | None


@dataclass(frozen=True)
class RunAnswer:
    problem_id: str
    sample: int
    status: str
    answer: str | None
    truth: str | None
    tokens: int


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _by_campaign(rows: Any, ids: list[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {cid: {} for cid in ids}
    for cid, status, n in rows:
        out[cid][status] = int(n)
    return out


class CampaignQueries(StoreBase):
    # -- lookup ----------------------------------------------------------------------------------------
    def campaign_by_name(self, name: str) -> CampaignRow | None:
        return self.one(CampaignRow, "campaign_by_name", {"name": name})

    def campaign_by_id(self, campaign_id: int) -> CampaignRow | None:
        return self.one(CampaignRow, "campaign_by_id", {"id": campaign_id})

    def all_campaigns(self) -> list[CampaignRow]:
        return self.all(CampaignRow, "all_campaigns")

    def recent_campaign_names(self, n: int = 5) -> list[str]:
        return self.scalars("recent_campaign_names", {"n": n})

    # -- submit ----------------------------------------------------------------------------------------
    def insert_campaign(
        self,
        name: str,
        config: dict[str, Any],
        source: str,
        problem_budget: int | None,
        campaign_budget: int | None,
    ) -> int | None:
        """The new campaign's id; None when the name is taken."""
        params = {
            "name": name,
            "config": json.dumps(config),
            "source": source,
            "problem_budget": problem_budget,
            "campaign_budget": campaign_budget,
        }
        return self.scalar("insert_campaign", params)  # type: ignore[no-any-return]

    def copy_problems(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """COPY rows (campaign_id, external_id, messages, ground_truth, category, extra, line) in; the
        documents are given as they are (Python values). Returns how many."""
        cursor = self.conn.cursor()
        count = 0
        with cursor.copy(load()["copy_problems"].sql) as copy:
            copy.set_types(("int8", "text", "json", "jsonb", "text", "jsonb", "int4"))
            for campaign_id, external_id, messages, ground_truth, category, extra, line in rows:
                copy.write_row(
                    (
                        campaign_id,
                        external_id,
                        Json(messages),
                        _jsonb(ground_truth),
                        category,
                        _jsonb(extra),
                        line,
                    )
                )
                count += 1
        return count

    def insert_runs(self, campaign_id: int, samples: int, problem_budget: int | None) -> int:
        return self.count("insert_runs", {"cid": campaign_id, "last": samples - 1, "limit": problem_budget})

    # -- status ----------------------------------------------------------------------------------------
    def problem_counts(self, ids: list[int]) -> dict[int, int]:
        return {int(cid): int(n) for cid, n in self.execute("problem_counts", {"ids": ids})}

    def run_status_counts(self, ids: list[int], pools: bool = False) -> dict[int, dict[str, int]]:
        return _by_campaign(self.execute("run_status_counts", {"ids": ids, "pools": pools}), ids)

    def trajectory_status_counts(self, ids: list[int]) -> dict[int, dict[str, int]]:
        return _by_campaign(self.execute("trajectory_status_counts", {"ids": ids}), ids)

    def live_tokens(self, ids: list[int]) -> dict[int, LiveTokens]:
        return {row.campaign_id: row for row in self.all(LiveTokens, "live_tokens", {"ids": ids})}

    def budget_decision_reasons(self, ids: list[int]) -> list[tuple[int, str | None]]:
        return [(int(cid), reason) for cid, reason in self.execute("budget_decision_reasons", {"ids": ids})]

    def find_problem(self, campaign_id: int, problem_id: str) -> tuple[int, Any] | None:
        row = self.execute("find_problem", {"c": campaign_id, "p": problem_id}).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def first_problem_ids(self, campaign_id: int) -> list[str]:
        return self.scalars("first_problem_ids", {"c": campaign_id})

    def problem_trajectories(self, problem_row_id: int) -> list[ProblemTrajectoryRow]:
        return self.all(ProblemTrajectoryRow, "problem_trajectories", {"p": problem_row_id})

    def rounds_by_index_and_status(self, campaign_id: int) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = defaultdict(dict)
        for index, status, n in self.execute("rounds_by_index_and_status", {"c": campaign_id}):
            out[int(index)][status] = int(n)
        return dict(out)

    def finished_run_cost(self, campaign_id: int) -> tuple[int, float]:
        row = self.execute("finished_run_cost", {"c": campaign_id}).fetchone()
        return int(row.runs), float(row.mean_tokens)

    def settled_tokens(self, campaign_id: int) -> int:
        return int(self.scalar("settled_tokens", {"c": campaign_id}))

    def run_answers(self, campaign_id: int) -> list[RunAnswer]:
        return self.all(RunAnswer, "run_answers", {"cid": campaign_id})

    # -- control ---------------------------------------------------------------------------------------
    def set_campaign_status(self, campaign_id: int, status: str) -> None:
        self.execute("set_campaign_status", {"id": campaign_id, "status": status})

    def unstamp_pending(self, campaign_id: int) -> int:
        return self.count("unstamp_pending", {"id": campaign_id})

    def cancel_generating_rounds(self, campaign_id: int) -> None:
        self.execute("cancel_generating_rounds", {"id": campaign_id})

    def cancel_campaign(self, campaign_id: int) -> None:
        self.execute("cancel_campaign", {"id": campaign_id})

    def runs_last_rounds(self, campaign_id: int, status: str) -> list[tuple[int, int | None]]:
        """(run id, its last round's id or None) of the campaign's runs that ended with `status`."""
        rows = self.execute("runs_last_rounds", {"id": campaign_id, "status": str(status)})
        return [(int(r), None if x is None else int(x)) for r, x in rows]

    def reopen_rounds(self, round_ids: list[int]) -> None:
        self.execute("reopen_rounds", {"ids": round_ids})

    def reopen_campaign(self, campaign_id: int) -> None:
        self.execute("reopen_campaign", {"id": campaign_id})

    def pool_users(self, campaign_id: int, unfinished_only: bool) -> list[str]:
        return self.scalars("pool_users", {"id": campaign_id, "unfinished": unfinished_only})

    def count_running_trajectories(self, campaign_id: int) -> int:
        return int(self.scalar("count_running_trajectories", {"id": campaign_id}))

    def queued_trajectories(self, campaign_id: int) -> list[int]:
        return self.scalars("queued_trajectories", {"id": campaign_id})

    def count_runs(self, campaign_id: int) -> int:
        return int(self.scalar("count_runs", {"id": campaign_id}))

    def delete_campaign(self, campaign_id: int) -> None:
        self.execute("delete_campaign", {"id": campaign_id})

    def set_campaign_budget(self, campaign_id: int, limit: int | None) -> int | None:
        """The new budget, its unfinished runs' free grants taken back (their rows locked first, then the
        campaign's, as every grant takes them); returns the budget it had (None: unlimited)."""
        self.execute("lock_unfinished_runs", {"id": campaign_id})
        old = self.scalar("set_campaign_budget", {"b": limit, "id": campaign_id})
        return None if old is None else int(old)

    def lift_quarantine(self, campaign_id: int) -> list[tuple[int, str | None]]:
        return [(int(r), reason) for r, reason in self.execute("lift_quarantine", {"cid": campaign_id})]

    def unstamp_pending_of_runs(self, run_ids: list[int]) -> None:
        self.execute("unstamp_pending_of_runs", {"runs": run_ids})
