"""Terminal rendering (rich) for status, progress and run summaries. Output only; no queries."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def status_table(rows: list[dict[str, Any]]) -> None:
    console = Console()
    if not rows:
        console.print("no campaigns yet: `pacore submit FILE` creates one")
        return
    table = Table(title="pacore campaigns")
    for column in (
        "campaign",
        "status",
        "K",
        "problems",
        "runs done",
        "running",
        "failed",
        "tokens",
        "budget",
    ):
        table.add_column(column, overflow="fold")
    for c in rows:
        runs = c["runs"]
        table.add_row(
            c["name"],
            c["status"],
            ",".join(map(str, [*c["config"]["rounds"], 1])),
            _fmt(c["problems"]),
            f"{_fmt(runs.get('done', 0))}/{_fmt(runs['total'])}",
            _fmt(runs.get("running", 0)),
            _fmt(runs.get("failed", 0)),
            _fmt(c["tokens"]["used"]),
            _fmt(c["tokens"]["campaign_budget"]),
        )
    console.print(table)


class Progress:
    """A progress bar over runs, on stderr."""

    def __init__(self) -> None:
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("runs  {task.fields[tokens]} tokens"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task("solving", total=None, tokens="0")

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def update(self, summary: dict[str, Any]) -> None:
        runs = summary["runs"]
        finished = runs["total"] - runs.get("pending", 0) - runs.get("running", 0)
        self._bar.update(
            self._task, total=runs["total"], completed=finished, tokens=f"{summary['tokens']['used']:,}"
        )


def run_summary(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"campaign {summary['name']}: {summary['status']}")
    for column in ("problem", "run", "status", "answer", "ground truth", "tokens"):
        table.add_column(column)
    for a in summary["answers"]:
        table.add_row(
            a["problem_id"],
            str(a["run"]),
            a["status"],
            a["answer"] or "-",
            a["ground_truth"] or "-",
            _fmt(a["tokens"]),
        )
    console.print(table)
    console.print(
        f"tokens: {summary['tokens']['used']:,} generated, {summary['tokens']['prompt']:,} prompt; logs in {summary['logs']}"
    )
