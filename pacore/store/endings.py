"""Queries that end things: an attempt without a result (fenced off and settled), runs (their tokens
move to the campaign) and campaigns. Each change is one statement; see `sql/endings.sql`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pacore.core.rounds import campaign_after_runs
from pacore.core.vocabulary import CampaignStatus, Outcome, RunStatus, TrajectoryStatus
from pacore.store.base import StoreBase


@dataclass(frozen=True)
class FencedAttempt:
    """A trajectory's attempt as it was fenced off."""

    trajectory_id: int
    attempt: int  # the old attempt; the trajectory now runs attempt + 1
    status: str  # the old status
    run_id: int
    campaign_id: int
    reserved: int  # what the old attempt held
    streamed: int
    checkpointed: int
    in_ledger: bool  # a running attempt appended to the ledger (and settled) now
    overrun: int  # tokens past the problem or campaign budget after settling (0 unless an engine overran)


@dataclass(frozen=True)
class Progress:
    status: str
    unfinished: int  # runs pending or running


@dataclass(frozen=True)
class Scope:
    """Which trajectories a fence applies to: by id (at one attempt), a campaign's, or some rounds'."""

    ids: Sequence[int] | None = None
    attempt: int | None = None
    campaign: int | None = None
    rounds: Sequence[int] | None = None


class EndingQueries(StoreBase):
    def fence_attempts(
        self,
        scope: Scope,
        from_: Sequence[TrajectoryStatus],
        to: TrajectoryStatus,
        outcome: Outcome,
        error: str | None,
        *,
        worker: str | None = None,
        spent: int | None = None,
        wasted: int | None = None,
        prompt: int | None = None,
        failure: bool = False,
        discard: bool = False,
        waiting: bool = False,
    ) -> list[FencedAttempt]:
        """Fence off the attempts in `scope` whose status is in `from_`, and start the next ones in `to`.
        Running attempts end in the ledger as `outcome` and are settled on their runs, with `spent`,
        `wasted` and `prompt` when the worker says (a hand-back), else all they held. `failure`: the
        attempt's own request failed (counted toward PACORE_MAX_ATTEMPTS); `discard`: drop the checkpoint."""
        params = {
            "ids": None if scope.ids is None else list(scope.ids),
            "attempt": scope.attempt,
            "campaign": scope.campaign,
            "rounds": None if scope.rounds is None else list(scope.rounds),
            "from": [str(s) for s in from_],
            "to": str(to),
            "outcome": str(outcome),
            "error": error,
            "worker": worker,
            "spent": spent,
            "wasted": wasted,
            "prompt": prompt,
            "failure": failure,
            "discard": discard,
            "waiting": waiting,
        }
        return self.all(FencedAttempt, "fence_attempts", params)

    def end_runs(
        self,
        status: RunStatus,
        reason: str,
        *,
        ids: Sequence[int] | None = None,
        campaign: int | None = None,
        message: str | None = None,
        answer: str | None = None,
    ) -> list[int]:
        """End the runs not yet ended among `ids` (or a campaign's); returns those it ended."""
        params = {
            "ids": None if ids is None else list(ids),
            "campaign": campaign,
            "status": str(status),
            "reason": reason,
            "message": message,
            "answer": answer,
        }
        return self.scalars("end_runs", params)

    def reopen_runs(self, ids: Sequence[int]) -> list[int]:
        """Failed runs among `ids` run again; returns those it reopened."""
        return self.scalars("reopen_runs", {"ids": list(ids)})

    def campaign_progress(self, campaign_id: int) -> Progress:
        found = self.one(Progress, "campaign_progress", {"id": campaign_id})
        assert found is not None, f"campaign {campaign_id} does not exist"
        return found

    def finish_campaign(self, campaign_id: int, status: CampaignStatus) -> None:
        self.execute("finish_campaign", {"id": campaign_id, "status": str(status)})

    def finish_campaign_if_done(self, campaign_id: int) -> CampaignStatus | None:
        """Apply `campaign_after_runs` to the campaign. Call it after a statement of this transaction
        locked the campaign row (`end_runs`, a status change): the count then sees every run that ended
        before. Returns the campaign's new status, if it changed."""
        progress = self.campaign_progress(campaign_id)
        status = campaign_after_runs(progress.status, progress.unfinished)
        if status is not None:
            self.finish_campaign(campaign_id, status)
        return status
