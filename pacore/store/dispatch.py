"""Queries of dispatching: admission control, publishing, and what the reconciler re-drives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pacore.core.reconcile import TrajectoryRow
from pacore.store.base import StoreBase
from pacore.store.notices import WORK_CHANNEL


@dataclass(frozen=True)
class Starved:
    """A run whose unfinished trajectories all wait for budget."""

    run_id: int
    campaign_id: int
    own: int | None  # what its problem budget has left (None: unlimited)
    shared: int | None  # what its campaign's budget has left for it (None: unlimited)
    all_starved: bool  # every other unfinished run of its campaign is starved too


@dataclass(frozen=True)
class Unpublished:
    round_id: int
    model: str
    trajectory_id: int
    attempt: int


class DispatchQueries(StoreBase):
    def fleet_capacity(self, stale_seconds: int) -> int:
        return int(self.scalar("fleet_capacity", {"stale": stale_seconds}))

    def count_in_flight(self) -> int:
        return int(self.scalar("count_in_flight"))

    def wake_scheduler(self) -> None:
        """Schedulers run their dispatch tick as soon as this transaction commits (`pacore.store.notices`)."""
        self.execute("wake_scheduler", {"channel": WORK_CHANNEL})

    def mark_published(self, trajectory_ids: list[int]) -> None:
        self.execute("mark_published", {"ids": trajectory_ids})

    def unpublished_trajectories(self, grace_seconds: int, block: int) -> list[Unpublished]:
        """`block`: the room a trajectory waiting for budget needs before it is published again
        (`pacore.core.budget.wake_tokens`)."""
        return self.all(Unpublished, "unpublished_trajectories", {"grace": grace_seconds, "block": block})

    def starved_runs(self, run_id: int | None = None) -> list[Starved]:
        """Every starved run, or only `run_id` if it is one."""
        return self.all(Starved, "starved_runs", {"run": run_id})

    def active_models(self) -> list[str]:
        return self.scalars("active_models")

    def published_at_or_now(self, head: int | None) -> datetime | None:
        return self.scalar("published_at_or_now", {"head": head, "empty": head is None})  # type: ignore[no-any-return]

    def stuck_rounds(self, campaign_id: int | None = None, grace: float = 0) -> list[int]:
        """Rounds with nothing unfinished that did not advance; a chord's own round only once its last
        trajectory finished `grace` seconds ago (its callback is late: lost)."""
        return self.scalars("stuck_rounds", {"cid": campaign_id, "grace": grace})

    def reconcile_trajectories(
        self, campaign_id: int | None, everything: bool, horizon: int, cutoffs: dict[str, str]
    ) -> list[TrajectoryRow]:
        params = {
            "cid": campaign_id,
            "everything": everything,
            "horizon": horizon,
            "cutoffs": json.dumps(cutoffs),
        }
        return self.all(TrajectoryRow, "reconcile_trajectories", params)

    def round_models(self, round_ids: list[int]) -> dict[int, str]:
        return {int(r[0]): r[1] for r in self.execute("round_models", {"ids": round_ids})}
