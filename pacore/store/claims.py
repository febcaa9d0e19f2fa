"""Queries of a generation's life on a worker: claim, result, hand-back, ledger, quarantine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pacore.store.base import StoreBase


@dataclass(frozen=True)
class Claimed:
    trajectory_id: int
    sampling_seed: int | None
    messages: list[dict[str, Any]]
    round_max_tokens: int | None
    config: dict[str, Any]
    run_id: int
    campaign_id: int
    failed_attempts: int  # attempts its own request failed so far
    checkpoint_text: str  # what earlier attempts streamed, to continue
    checkpoint_tokens: int
    checkpoint_ids: list[int] | None  # its token ids (None: some chunk has none)
    free_grant: int  # its run's grant not used or reserved, as read (a hint: a block's statement decides)
    held: int  # tokens the attempt holds (a re-claim after a lost answer: the block it took)


@dataclass(frozen=True)
class Finished:
    written: bool  # the attempt still ran the trajectory: its result is written
    in_ledger: bool  # appended to the ledger now (not before): its tokens are settled by this call
    reserved: int  # what the attempt held
    overrun: int  # tokens past the problem or campaign budget after settling (0 unless the engine overran)


class ClaimQueries(StoreBase):
    def claim_trajectories(self, pairs: list[tuple[int, int]], worker: str, lease: int) -> dict[int, Claimed]:
        """Claim the (trajectory id, attempt) pairs in one statement: the claimed ones by trajectory id."""
        params = {
            "ids": [t for t, _ in pairs],
            "attempts": [a for _, a in pairs],
            "worker": worker,
            "lease": lease,
        }
        return {row.trajectory_id: row for row in self.all(Claimed, "claim_trajectories", params)}

    def finish_and_settle(
        self, trajectory_id: int, attempt: int, run_id: int, worker: str, **result: Any
    ) -> Finished:
        """`result`: status, content, reasoning, finish, prompt, completion, error (the row's), and
        spent, wasted, spent_prompt, retries (the attempt's, for the ledger and the run)."""
        params = {"id": trajectory_id, "attempt": attempt, "run": run_id, "worker": worker, **result}
        found = self.one(Finished, "finish_and_settle", params)
        assert found is not None
        return found

    def engine_lost_workers(self, trajectory_id: int, run_id: int) -> int:
        return int(self.scalar("engine_lost_workers", {"id": trajectory_id, "run": run_id}))

    def quarantine_run(self, run_id: int, reason: str) -> None:
        self.execute("quarantine_run", {"run": run_id, "reason": reason})
