"""Queries of the token counters on trajectory, run and campaign rows (the budgets' state)."""

from __future__ import annotations

from pacore.core.budget import CampaignTokens, RunTokens
from pacore.store.base import StoreBase


class CounterQueries(StoreBase):
    def lock_running_trajectory(self, trajectory_id: int, attempt: int) -> int | None:
        """Lock the row if this attempt still runs it, and return the tokens it holds (None: it does not
        run it any more)."""
        held = self.scalar("lock_running_trajectory", {"id": trajectory_id, "attempt": attempt})
        return None if held is None else int(held)

    def lock_run_tokens(self, run_id: int) -> RunTokens:
        found = self.one(RunTokens, "lock_run_tokens", {"id": run_id})
        assert found is not None, f"run {run_id} does not exist"
        return found

    def lock_campaign_tokens(self, campaign_id: int) -> CampaignTokens:
        found = self.one(CampaignTokens, "lock_campaign_tokens", {"id": campaign_id})
        assert found is not None, f"campaign {campaign_id} does not exist"
        return found

    def campaign_tokens(self, campaign_id: int) -> CampaignTokens:
        """Without a lock: for estimates only."""
        found = self.one(CampaignTokens, "campaign_tokens", {"id": campaign_id})
        assert found is not None, f"campaign {campaign_id} does not exist"
        return found

    def write_run_tokens(self, run_id: int, run: RunTokens) -> None:
        params = {"granted": run.granted, "used": run.used, "reserved": run.reserved, "id": run_id}
        self.execute("write_run_tokens", params)

    def write_campaign_tokens(self, campaign_id: int, campaign: CampaignTokens) -> None:
        self.execute(
            "write_campaign_tokens", {"used": campaign.used, "reserved": campaign.reserved, "id": campaign_id}
        )

    def add_trajectory_reservation(self, trajectory_id: int, n: int, streamed: int) -> None:
        self.execute("add_trajectory_reservation", {"n": n, "streamed": streamed, "id": trajectory_id})

    def add_run_waste_and_prompt(self, run_id: int, wasted: int, prompt: int) -> None:
        self.execute("add_run_waste_and_prompt", {"wasted": wasted, "prompt": prompt, "id": run_id})
