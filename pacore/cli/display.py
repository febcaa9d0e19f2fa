"""Terminal rendering (rich) for status, progress and run summaries. Output only; no queries."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from pacore.core.vocabulary import RoundStatus, RunStatus


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
            _fmt(runs.get(RunStatus.RUNNING, 0)),
            _fmt(runs.get(RunStatus.FAILED, 0)),
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
        finished = runs["total"] - runs.get(RunStatus.PENDING, 0) - runs.get(RunStatus.RUNNING, 0)
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


def report_table(reports: list[dict[str, Any]]) -> None:
    """Table 1 of the paper: accuracy with TTC (thousands of tokens) per setting, and the baseline."""
    console = Console()
    table = Table(title="accuracy (pass@1) and test-time compute")
    for column in (
        "campaign",
        "rounds",
        "accuracy",
        "TTC (k)",
        "majority@K1",
        "TTC K1 (k)",
        "no answer",
        "runs",
    ):
        table.add_column(column)
    for r in reports:
        table.add_row(
            r["campaign"],
            r["setting"],
            f"{r['accuracy']:.1%}",
            f"{r['ttc_mean'] / 1000:,.1f}",
            f"{r['majority_vote_accuracy']:.1%} (K={r['majority_vote_k']})",
            f"{r['majority_vote_ttc_mean'] / 1000:,.1f}",
            f"{r['no_answer_rate']:.1%}",
            f"{r['runs_graded']}/{r['runs']}",
        )
    console.print(table)
    rounds = Table(title="per round: answer agreement and compaction health")
    for column in ("campaign", "round", "trajectories", "answer agreement", "no message"):
        rounds.add_column(column)
    for r in reports:
        for h in r["rounds"]:
            agreement = "-" if h["answer_agreement"] is None else f"{h['answer_agreement']:.1%}"
            rounds.add_row(
                r["campaign"],
                str(h["round"]),
                str(h["trajectories"]),
                agreement,
                f"{h['no_message_share']:.1%}",
            )
    console.print(rounds)


def watch_panel(view: dict[str, Any], rate: float | None, eta: float | None) -> Any:
    """One frame of `pacore status --watch`."""
    from rich.console import Group
    from rich.panel import Panel

    runs, tokens = view["runs"], view["tokens"]
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]{view['name']}[/] {view['status']}",
        f"runs {runs.get('done', 0)}/{runs['total']} done, {runs.get('running', 0)} running, "
        f"{runs.get('pending', 0)} pending, {runs.get('failed', 0)} failed, "
        f"{runs.get('quarantined', 0)} quarantined, {runs.get('budget_exhausted', 0)} out of budget, "
        f"{runs.get('no_conclusion', 0)} without a conclusion",
    )
    budget = tokens["campaign_budget"]
    head.add_row(
        f"tokens {_fmt(tokens['used'])} used" + (f" of {_fmt(budget)}" if budget else ""),
        f"reserved {_fmt(tokens['reserved'])}, wasted {_fmt(tokens['wasted'])}, prompt {_fmt(tokens['prompt'])}",
    )
    left = view["projected_tokens_left"]
    head.add_row(
        f"throughput {'-' if rate is None else f'{rate:,.0f} tokens/s'}",
        f"projection: {'-' if left is None else _fmt(left)} tokens left"
        + ("" if eta is None else f", about {eta / 60:,.1f} min"),
    )
    head.add_row(f"workers {view['live_workers']} live", f"{view['live_slots']} generation slots")
    rounds = Table(title="rounds", expand=False)
    for column in ("round", *RoundStatus):
        rounds.add_column(column)
    for index, counts in sorted(view["rounds_by_index"].items()):
        rounds.add_row(str(index), *(str(counts.get(s, 0)) for s in RoundStatus))
    return Panel(Group(head, rounds), title="pacore status --watch (Ctrl-C to stop)")


def problem_view(detail: dict[str, Any]) -> None:
    console = Console()
    truth = (detail["ground_truth"] or {}).get("answer")
    console.print(f"[bold]{detail['campaign']}[/] problem {detail['problem_id']} (ground truth: {truth})")
    for run in detail["runs"]:
        console.print(
            f"run {run['sample']}: {run['status']}, answer {run['answer']}, {_fmt(run['tokens'])} tokens"
            + (f" ({run['reason']})" if run["reason"] else "")
        )
        for rnd in run["rounds"]:
            table = Table(title=f"round {rnd['index']} (K={rnd['k']}, {rnd['status']}): {rnd['plan'] or ''}")
            for column in ("#", "status", "attempt", "finish", "tokens", "message", "note"):
                table.add_column(column, overflow="fold")
            for t in rnd["trajectories"]:
                message = (t["message"] or "")[:80]
                table.add_row(
                    str(t["index"]),
                    t["status"],
                    str(t["attempt"]),
                    t["finish_reason"] or "-",
                    _fmt(t["completion_tokens"]),
                    message,
                    t["note"] or "",
                )
            console.print(table)
