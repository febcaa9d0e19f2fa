"""Queries of checkpoints: append-only chunk rows of what running attempts have streamed."""

from __future__ import annotations

from typing import Any

from pacore.store.base import StoreBase


class CheckpointQueries(StoreBase):
    def discard_checkpoint(self, trajectory_id: int, attempt: int) -> None:
        self.execute("discard_checkpoint", {"id": trajectory_id, "attempt": attempt})

    def record_streamed(self, tids: list[int], attempts: list[int], spent: list[int]) -> set[int]:
        """Returns the trajectories whose attempt still runs."""
        return set(self.scalars("record_streamed", {"tids": tids, "attempts": attempts, "spent": spent}))

    def append_chunks(self, chunks: list[dict[str, Any]]) -> None:
        """`chunks`: tid, attempt, seq, text, tokens each."""
        self.execute("append_chunk", chunks)
