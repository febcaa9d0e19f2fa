"""Queries of rounds: starting runs, creating rounds and their trajectories (own or from a pool),
advancing a finished round once, and ending runs and campaigns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pacore.core.budget import CampaignTokens, RunTokens
from pacore.core.compaction import Outcome
from pacore.store.base import StoreBase
from pacore.store.counters import PlanCounters


@dataclass(frozen=True)
class PendingRun:
    run_id: int
    campaign_id: int
    config: dict[str, Any]
    messages: list[dict[str, Any]]
    counters: PlanCounters  # what planning its round 1 reads


@dataclass(frozen=True)
class OutcomeRow(Outcome):
    """An outcome with the id of its trajectory row (`index` is its position in the round). A won round's
    outcomes carry their reasoning only when they have no content (`win_round`): a reference uses it then
    only, under pass_truncated."""

    trajectory_id: int = 0


@dataclass(frozen=True)
class WonRound:
    """A round this transaction advances, and what deciding its run's next step needs."""

    run_id: int
    index: int
    is_final: bool
    waited: Any  # seconds since its last trajectory finished (a Decimal; None for a round of none)
    campaign_id: int
    config: dict[str, Any]  # the campaign's
    messages: list[dict[str, Any]]  # the problem's
    sample: int  # the run's (-1: a round-1 pool's own run)
    outcomes: list[OutcomeRow]  # in completion order
    counters: PlanCounters  # what planning the run's next round reads


@dataclass(frozen=True)
class CreatedRound:
    round_id: int
    trajectories: list[tuple[int, int]]  # (id, index) of its trajectories, in index order


class RoundQueries(StoreBase):
    def pending_runs_round_robin(self, limit: int, after: int) -> list[int]:
        return self.scalars("pending_runs_round_robin", {"limit": limit, "after": after})

    def lock_pending_runs(self, run_ids: list[int]) -> list[PendingRun]:
        rows = self.execute("lock_pending_runs", {"ids": run_ids})
        return [PendingRun(r.run_id, r.campaign_id, r.config, r.messages, _plan_counters(r)) for r in rows]

    def start_run(self, run_id: int) -> None:
        self.execute("start_run", {"id": run_id})

    def insert_round(
        self,
        run_id: int,
        index: int,
        k: int,
        is_final: bool,
        max_tokens: int | None,
        messages: list[dict[str, Any]],
        reason: str,
    ) -> int | None:
        """The new round's id (a round without trajectories of its own: one that links a pool's); None when
        the run has this round already."""
        params = {
            "run": run_id,
            "index": index,
            "k": k,
            "final": is_final,
            "max_tokens": max_tokens,
            "messages": json.dumps(messages),
            "reason": reason,
        }
        return self.scalar("insert_round", params)  # type: ignore[no-any-return]

    def create_round(
        self,
        campaign_id: int,
        run_id: int,
        index: int,
        is_final: bool,
        max_tokens: int | None,
        messages: list[dict[str, Any]],
        reason: str,
        seeds: list[int | None],
    ) -> CreatedRound | None:
        """A new round with its len(seeds) trajectories, each linked to the round at its index; None when
        the run has this round already."""
        assert seeds, "a round has at least one trajectory"
        params = {
            "campaign": campaign_id,
            "run": run_id,
            "index": index,
            "k": len(seeds),
            "final": is_final,
            "max_tokens": max_tokens,
            "messages": json.dumps(messages),
            "reason": reason,
            "last": len(seeds) - 1,
            "seeds": json.dumps(seeds),
        }
        rows = self.execute("create_round", params).fetchall()
        if not rows:
            return None
        return CreatedRound(int(rows[0].round_id), sorted((int(r.id), int(r.index)) for r in rows))

    def link_pool_trajectories(self, round_id: int, pool_round_id: int, indices: list[int]) -> None:
        self.execute("link_pool_trajectories", {"round": round_id, "pool": pool_round_id, "indices": indices})

    def find_pool_round(
        self,
        n: int,
        messages: list[dict[str, Any]],
        model: str,
        temperature: float,
        top_p: float,
        max_tokens: int | None,
        campaign_id: int,
    ) -> int | None:
        params = {
            "n": n,
            "messages": json.dumps(messages),
            "model": model,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": "" if max_tokens is None else str(max_tokens),
            "campaign": campaign_id,
        }
        return self.scalar("find_pool_round", params)  # type: ignore[no-any-return]

    def insert_pool_run(self, run_id: int, reason: str) -> int | None:
        return self.scalar("insert_pool_run", {"run": run_id, "reason": reason})  # type: ignore[no-any-return]

    def own_pool_round(self, run_id: int) -> int:
        return int(self.scalar("own_pool_round", {"run": run_id}))

    def win_round(self, round_id: int) -> WonRound | None:
        """The round, won by this transaction, with its outcomes and its run's counters (one statement);
        None when it is not finished or another transaction won it."""
        row = self.execute("win_round", {"id": round_id}).fetchone()
        if row is None:
            return None
        return WonRound(
            row.run_id,
            row.index,
            row.is_final,
            row.waited,
            row.campaign_id,
            row.config,
            row.messages,
            row.sample,
            [OutcomeRow(**o) for o in row.outcomes or []],
            _plan_counters(row),
        )

    def record_round_decision(
        self,
        round_id: int,
        messages: dict[int, str | None],
        order: list[int],
        finished: list[int],
        reason: str,
    ) -> None:
        """`messages`: trajectory id -> the reference it gives the next round (None: none)."""
        params = {
            "id": round_id,
            "ids": list(messages),
            "messages": list(messages.values()),
            "order": json.dumps(order),
            "finished": json.dumps(finished),
            "reason": reason,
        }
        self.execute("record_round_decision", params)

    def fail_round(self, round_id: int) -> None:
        self.execute("fail_round", {"id": round_id})

    def lock_run(self, run_id: int) -> bool:
        """Lock the run if it has not ended (`lock_run`); False if it has."""
        return self.scalar("lock_run", {"id": run_id}) is not None

    def run_tokens(self, run_id: int) -> tuple[RunTokens, CampaignTokens]:
        """The run's and its campaign's counters, as this statement reads them."""
        row = self.execute("run_tokens", {"id": run_id}).fetchone()
        return _run_tokens(row), _campaign_tokens(row)


def _plan_counters(row: Any) -> PlanCounters:
    """From a row with the planning columns of `win_round` and `lock_pending_runs`."""
    mean = None if row.mean is None else float(row.mean)
    return PlanCounters(_run_tokens(row), _campaign_tokens(row), mean)


def _run_tokens(row: Any) -> RunTokens:
    return RunTokens(row.run_limit, row.run_granted, row.run_used, row.run_reserved)


def _campaign_tokens(row: Any) -> CampaignTokens:
    return CampaignTokens(row.campaign_limit, row.campaign_used, row.campaign_reserved)
