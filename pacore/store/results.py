"""Queries of what campaigns produced: export, report, archive, and the metrics gauges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pacore.store.base import StoreBase


@dataclass(frozen=True)
class ExportRun:
    run_id: int
    sample: int
    status: str
    reason: str | None
    answer: str | None
    final_message: str | None
    used: int
    prompt: int
    external_id: str
    ground_truth: Any


@dataclass(frozen=True)
class ExportTrajectory:
    run_id: int
    round_index: int
    is_final: bool
    input_messages: list[dict[str, Any]]
    response_order: list[int] | None
    finish_order: list[int] | None
    round_status: str
    position: int
    content: str | None
    reasoning: str | None
    status: str
    finish_reason: str | None
    completion_tokens: int | None
    prompt_tokens: int | None
    error: str | None
    attempt: int
    attempts_settled: int
    pool_trajectory: int | None


@dataclass(frozen=True)
class ReportRun:
    run_id: int
    problem_id: str
    status: str
    final_message: str | None
    ttc: int
    truth: str | None


class ResultQueries(StoreBase):
    def campaign_pass_truncated(self, campaign_id: int) -> bool:
        return bool(self.scalar("campaign_pass_truncated", {"id": campaign_id}))

    def export_runs(self, campaign_id: int, after: int, n: int) -> list[ExportRun]:
        return self.all(ExportRun, "export_runs", {"cid": campaign_id, "last": after, "n": n})

    def export_trajectories(self, run_ids: list[int]) -> list[ExportTrajectory]:
        return self.all(ExportTrajectory, "export_trajectories", {"ids": run_ids})

    def report_runs(self, campaign_id: int) -> list[ReportRun]:
        return self.all(ReportRun, "report_runs", {"id": campaign_id})

    def round_one_tokens(self, campaign_id: int) -> dict[int, int]:
        return {int(r): int(n) for r, n in self.execute("round_one_tokens", {"id": campaign_id})}

    def round_references(self, campaign_id: int) -> list[tuple[int, int, str | None]]:
        return [(int(r), int(i), m) for r, i, m in self.execute("round_references", {"id": campaign_id})]

    def archive_state(self, campaign_id: int) -> tuple[str | None, Any]:
        row = self.execute("archive_state", {"id": campaign_id}).fetchone()
        return row[0], row[1]

    def set_archived_to(self, campaign_id: int, path: str) -> None:
        self.execute("set_archived_to", {"id": campaign_id, "path": path})

    def purge_text(self, campaign_id: int) -> int:
        """Delete a campaign's generated text, checkpoints and round inputs; returns the trajectories
        that held text."""
        purged = self.count("purge_trajectory_text", {"id": campaign_id})
        self.execute("purge_chunks", {"id": campaign_id})
        self.execute("purge_round_inputs", {"id": campaign_id})
        self.execute("mark_text_purged", {"id": campaign_id})
        return purged

    def gauge_trajectories(self) -> list[tuple[str, str, int, int]]:
        return [(c, s, int(n), int(m)) for c, s, n, m in self.execute("gauge_trajectories")]

    def gauge_tokens(self) -> list[tuple[str, int, int, int]]:
        return [(c, int(u), int(r), int(w)) for c, u, r, w in self.execute("gauge_tokens")]
