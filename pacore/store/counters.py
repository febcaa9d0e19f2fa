"""Queries of the token counters on trajectory, run and campaign rows (the budgets' state)."""

from __future__ import annotations

from dataclasses import dataclass

from pacore.core.budget import CampaignTokens, RunTokens
from pacore.store.base import StoreBase


@dataclass(frozen=True)
class Reserved:
    before: int | None  # what the attempt held before (None: it no longer runs the trajectory)
    got: int  # what it took now
    limit: int | None  # the run's counters, as locked (for a grant when it took nothing)
    granted: int
    used: int
    reserved: int

    @property
    def run(self) -> RunTokens:
        return RunTokens(self.limit, self.granted, self.used, self.reserved)


@dataclass(frozen=True)
class PlanCounters:
    """What planning a run's next round reads (without a lock: estimates only)."""

    run: RunTokens
    campaign: CampaignTokens
    mean: float | None  # the run's mean completion tokens per finished trajectory (None before any)


class CounterQueries(StoreBase):
    def reserve_block(
        self, trajectory_id: int, attempt: int, run_id: int, want: int, minimum: int, streamed: int, held: int
    ) -> Reserved:
        params = {
            "id": trajectory_id,
            "attempt": attempt,
            "run": run_id,
            "want": want,
            "minimum": minimum,
            "streamed": streamed,
            "held": held,
        }
        found = self.one(Reserved, "reserve_block", params)
        assert found is not None
        return found

    def reserve_first_blocks(self, asks: list[tuple[int, int, int, int]]) -> dict[int, int]:
        """(trajectory id, attempt, run id, want) each: what each running attempt holds after, by
        trajectory id (`reserve_first_blocks` in budgets.sql)."""
        params = {
            "ids": [a[0] for a in asks],
            "attempts": [a[1] for a in asks],
            "runs": [a[2] for a in asks],
            "wants": [a[3] for a in asks],
        }
        return {int(t): int(n) for t, n in self.execute("reserve_first_blocks", params)}

    def grant_to_run(self, run_id: int, campaign_id: int, ask: int, minimum: int) -> int:
        """What the campaign gave the run (0: it has less than `minimum` left)."""
        params = {"run": run_id, "campaign": campaign_id, "ask": ask, "minimum": minimum}
        return int(self.scalar("grant_to_run", params))

    def return_idle_grant(self, run_id: int) -> int:
        """What a run none of whose trajectories runs gave back to its campaign (0: nothing, or one runs)."""
        return int(self.scalar("return_idle_grant", {"run": run_id}))

    def lock_live_run_tokens(self, run_id: int) -> RunTokens | None:
        """Locked, before a grant of its own; None when the run has ended."""
        return self.one(RunTokens, "lock_live_run_tokens", {"id": run_id})
