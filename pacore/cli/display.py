"""Terminal rendering (rich) for status, progress and run summaries. Output only; no queries.

Campaign names, problem ids, answers and model messages are the users' and the model's text: the consoles
here interpret no markup or emoji codes in anything (a name holding `[/b]` is just that text), and every
control character (a terminal escape sequence, say) is shown escaped, as `\\x1b`, never sent raw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from pacore.core.vocabulary import RoundStatus, RunStatus


def Console(stderr: bool = False) -> RichConsole:  # noqa: N802 - stands in for rich's Console
    """A console that renders every string as plain text: no markup, emoji codes or highlighting; lines of
    text are not broken at the terminal's width (a log or a pipe keeps them whole)."""
    return RichConsole(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


def clean(value: object) -> str:
    """Text safe to show on a terminal: control characters escaped (`\\x1b`, `\\n`), the rest as is."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


# Tables that fit 80 columns (a terminal's default, and what rich assumes for a log or a pipe): no
# vertical rules, single spaces between columns; cells never wrap (a long name is cut with an ellipsis).
COMPACT: dict[str, Any] = {
    "box": box.SIMPLE_HEAD,
    "padding": (0, 1),
    "collapse_padding": True,
    "pad_edge": False,
}


def _row(table: Table, *cells: object) -> None:
    table.add_row(*(clean(c) for c in cells))


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def status_table(rows: list[dict[str, Any]], fleet: list[dict[str, Any]], reconcile_seconds: float) -> None:
    """The campaigns, then the live fleet per model, then what waits: a campaign whose model no live worker
    serves, and trajectories whose worker stopped beating."""
    console = Console()
    if not rows:
        console.print("no campaigns yet: `pacore submit FILE` creates one")
    else:
        _campaigns_table(console, rows)
    for f in fleet:
        down = f", {f['engines_down']} with their engine down" if f["engines_down"] else ""
        revisions = f["revisions"]
        served = ""
        if revisions:
            served = (
                f", revision {revisions[0]}"
                if len(revisions) == 1
                else f", MIXED revisions {', '.join(revisions)}"
            )
        console.print(
            clean(f"fleet: {f['model']}: {f['workers']} live workers, {f['slots']} slots{down}{served}")
        )
    if not fleet:
        console.print("fleet: no live workers")
    for c in rows:
        if c.get("waiting_for"):
            console.print(clean(f"campaign {c['name']} waits: {c['waiting_for']}"))
        if expired := c.get("leases_expired"):
            console.print(
                clean(
                    f"campaign {c['name']}: {expired['trajectories']} running trajectories' workers stopped "
                    f"beating {expired['oldest_seconds']:,.0f} s ago at most; the reconciler re-drives them "
                    f"within {reconcile_seconds:,.0f} s"
                )
            )


def _campaigns_table(console: RichConsole, rows: list[dict[str, Any]]) -> None:
    table = Table(title="pacore campaigns", **COMPACT)
    table.add_column("campaign", no_wrap=True, overflow="ellipsis", min_width=8, ratio=1)
    for column in ("status", "K", "problems", "done", "running", "failed", "tokens", "budget"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("status", "K") else "right")
    for c in rows:
        runs = c["runs"]
        _row(
            table,
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


class GradingProgress:
    """Grading a large campaign takes a while: a progress bar on a terminal's stderr, else a line per
    campaign when its grading begins (nothing waits silently)."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("grading {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.live = self.console.is_terminal

    def __enter__(self) -> GradingProgress:
        if self.live:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self._bar.__exit__(None, None, None)

    def of(self, campaign: str) -> Callable[[int, int], None]:
        task: list[Any] = []

        def update(graded: int, total: int) -> None:
            if not task:
                task.append(self._bar.add_task(clean(campaign), total=total) if self.live else None)
                if not self.live:
                    self.console.print(clean(f"grading {total:,} answers of {campaign}"))
            if self.live:
                self._bar.update(task[0], completed=graded)

        return update


def run_summary(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=clean(f"campaign {summary['name']}: {summary['status']}"), **COMPACT)
    for column in ("problem", "run", "status", "answer", "ground truth", "tokens"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for a in summary["answers"]:
        _row(
            table,
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
    if graded := summary.get("accuracy"):
        ci = graded["accuracy_ci95"]
        vote = graded["majority_vote_accuracy"]
        console.print(
            f"accuracy (pass@1): {graded['accuracy']:.1%}"
            + (f" (95% CI {ci[0]:.0%}-{ci[1]:.0%} over {graded['problems']} problems)" if ci else "")
            + ("" if vote is None else f"; majority vote of round 1: {vote:.1%}")
            + f"; {graded['runs_graded']} runs finished"
        )


def report_table(reports: list[dict[str, Any]]) -> None:
    """Table 1 of the paper: accuracy with TTC (thousands of tokens) per setting, and the baseline."""
    console = Console()
    table = Table(title="accuracy (pass@1, 95% CI over problems) and TTC (k tokens per problem)", **COMPACT)
    table.add_column("campaign", no_wrap=True, overflow="ellipsis", min_width=8, ratio=1)
    for column in ("K", "accuracy", "TTC mean", "p10/p50/p90", "maj@K1", "TTC K1", "no ans", "runs"):
        table.add_column(
            column, no_wrap=True, overflow="ellipsis", justify="left" if column == "K" else "right"
        )
    for r in reports:
        q = r["ttc_quantiles"]
        quantiles = "/".join(f"{q[k] / 1000:,.0f}" for k in ("p10", "p50", "p90")) if q else "-"
        ci = r["accuracy_ci95"]
        vote = r["majority_vote_accuracy"]
        _row(
            table,
            r["campaign"],
            r["setting"],
            f"{r['accuracy']:.1%}" + (f" ({ci[0]:.0%}-{ci[1]:.0%})" if ci else ""),
            f"{r['ttc_mean'] / 1000:,.1f}",
            quantiles,
            "-" if vote is None else f"{vote:.1%}",
            f"{r['majority_vote_ttc_mean'] / 1000:,.1f}",
            f"{r['no_answer_rate']:.1%}",
            f"{r['runs_graded']}/{r['runs']}",
        )
    console.print(table)
    for r in reports:
        if r.get("text_purged"):
            console.print(clean(f"{r['campaign']}: {r['text_purged']}"))
    if not any(r["rounds"] for r in reports):
        return
    rounds = Table(title="per round: answer agreement and compaction health", **COMPACT)
    for column in ("campaign", "round", "trajectories", "answer agreement", "no message"):
        rounds.add_column(column, no_wrap=True, overflow="ellipsis")
    for r in reports:
        for h in r["rounds"]:
            agreement = "-" if h["answer_agreement"] is None else f"{h['answer_agreement']:.1%}"
            _row(
                rounds,
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
    _row(
        head,
        f"{view['name']} {view['status']}",
        f"runs {runs.get('done', 0)}/{runs['total']} done, {runs.get('running', 0)} running, "
        f"{runs.get('pending', 0)} pending, {runs.get('failed', 0)} failed, "
        f"{runs.get('quarantined', 0)} quarantined, {runs.get('budget_exhausted', 0)} out of budget, "
        f"{runs.get('no_conclusion', 0)} without a conclusion",
    )
    budget = tokens["campaign_budget"]
    _row(
        head,
        f"tokens {_fmt(tokens['used'])} used" + (f" of {_fmt(budget)}" if budget else ""),
        f"reserved {_fmt(tokens['reserved'])}, wasted {_fmt(tokens['wasted'])}, prompt {_fmt(tokens['prompt'])}",
    )
    left = view["projected_tokens_left"]
    _row(
        head,
        f"throughput {'-' if rate is None else f'{rate:,.0f} tokens/s'}",
        f"projection: {'-' if left is None else _fmt(left)} tokens left"
        + ("" if eta is None else f", about {eta / 60:,.1f} min"),
    )
    down = view["fleet"]["engines_down"]
    _row(
        head,
        f"model {view['model']}: {view['live_workers']} live workers",
        f"{view['live_slots']} generation slots" + (f", {down} workers' engine down" if down else ""),
    )
    if view.get("waiting_for"):
        _row(head, "waiting", view["waiting_for"])
    if expired := view.get("leases_expired"):
        _row(
            head, "leases expired", f"{expired['trajectories']} trajectories (the reconciler re-drives them)"
        )
    rounds = Table(title="rounds", expand=False, **COMPACT)
    for column in ("round", *RoundStatus):
        rounds.add_column(column, no_wrap=True, overflow="ellipsis")
    for index, counts in sorted(view["rounds_by_index"].items()):
        _row(rounds, str(index), *(str(counts.get(s, 0)) for s in RoundStatus))
    return Panel(Group(head, rounds), title="pacore status --watch (Ctrl-C to stop)")


def watch_line(view: dict[str, Any], rate: float | None, eta: float | None) -> str:
    """One line of `pacore status --watch` when its output is not a terminal (a log, a pipe)."""
    runs, tokens = view["runs"], view["tokens"]
    return clean(
        f"{time.strftime('%H:%M:%S')} {view['name']} {view['status']}: runs {runs.get('done', 0)}/{runs['total']} "
        f"done, {runs.get('running', 0)} running, {runs.get('failed', 0)} failed; tokens {_fmt(tokens['used'])}; "
        f"{'-' if rate is None else f'{rate:,.0f}'} tokens/s"
        + ("" if eta is None else f", about {eta / 60:,.1f} min left")
        + f"; {view['live_workers']} live workers"
    )


def problem_view(detail: dict[str, Any]) -> None:
    console = Console()
    truth = (detail["ground_truth"] or {}).get("answer")
    console.print(clean(f"{detail['campaign']} problem {detail['problem_id']} (ground truth: {truth})"))
    for run in detail["runs"]:
        console.print(
            clean(
                f"run {run['sample']}: {run['status']}, answer {run['answer']}, {_fmt(run['tokens'])} tokens"
                + (f" ({run['reason']})" if run["reason"] else "")
            )
        )
        for rnd in run["rounds"]:
            table = Table(
                title=clean(f"round {rnd['index']} (K={rnd['k']}, {rnd['status']}): {rnd['plan'] or ''}")
            )
            for column in ("#", "status", "attempt", "finish", "tokens", "message", "note"):
                table.add_column(column, no_wrap=True, overflow="ellipsis")
            for t in rnd["trajectories"]:
                message = (t["message"] or "")[:80]
                _row(
                    table,
                    str(t["index"]),
                    t["status"],
                    str(t["attempt"]),
                    t["finish_reason"] or "-",
                    _fmt(t["completion_tokens"]),
                    message,
                    t["note"] or "",
                )
            console.print(table)
