"""Queries of a generation's life on a worker: claim, result, hand-back, ledger, quarantine."""

from __future__ import annotations

from collections.abc import Sequence
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
    unbudgeted: bool  # its campaign has no budget, as read: a grant locks no campaign row


@dataclass(frozen=True)
class Result:
    """An attempt's result (done or failed) to write, and what the attempt cost, for the ledger and its
    run."""

    trajectory_id: int
    attempt: int
    run_id: int
    worker: str
    status: str
    content: str | None
    reasoning: str | None
    finish: str | None  # the engine's finish_reason
    prompt: int | None  # the result's tokens (the row's)
    completion: int | None
    error: str | None
    spent: int  # every token the attempt cost, retried tries included
    wasted: int  # of which not in the result
    spent_prompt: int
    retries: int = 0


# The statement's array parameters, from each Result's fields.
_RESULT_COLUMNS = {
    "ids": "trajectory_id",
    "attempts": "attempt",
    "runs": "run_id",
    "workers": "worker",
    "statuses": "status",
    "contents": "content",
    "reasonings": "reasoning",
    "finishes": "finish",
    "prompts": "prompt",
    "completions": "completion",
    "errors": "error",
    "spent": "spent",
    "wasted": "wasted",
    "spent_prompt": "spent_prompt",
    "retries": "retries",
}


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

    def finish_attempts(self, rows: Sequence[Result]) -> list[Finished]:
        """Write the attempts' results in one statement, in the order given (their `finish_seq` order);
        each attempt at most once in `rows`. One Finished per row, in their order."""
        assert len({r.trajectory_id for r in rows}) == len(rows), "a trajectory twice in one statement"
        columns = {name: [getattr(r, attr) for r in rows] for name, attr in _RESULT_COLUMNS.items()}
        return self.all(Finished, "finish_attempts", columns)

    def engine_lost_workers(self, trajectory_id: int, run_id: int) -> int:
        return int(self.scalar("engine_lost_workers", {"id": trajectory_id, "run": run_id}))

    def quarantine_run(self, run_id: int, reason: str) -> None:
        self.execute("quarantine_run", {"run": run_id, "reason": reason})
