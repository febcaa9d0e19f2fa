"""Result commands: grade, report, export, archive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pacore.cli.app import Context, main, pass_ctx


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(1), help="Grading subprocesses. Default: the CPU count.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def grade(file: Path, workers: int | None, as_json: bool) -> None:
    """Grade a JSONL of recorded outputs (`response` or `final_response`, and `ground_truth.answer`) with
    math-verify; where records carry a reference verdict (`source_correct`), print the agreement and
    every disagreement."""
    from pacore.results.grading import GradeFileError, grade_many, read_records, summarize

    try:
        records = read_records(str(file))
    except GradeFileError as exc:
        raise click.ClickException(str(exc)) from exc
    verdicts = grade_many([(r.response, r.truth) for r in records], workers)
    summary = summarize(records, verdicts)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"graded {summary['records']} records of {summary['problems']} problems: {summary['correct']} correct, "
        f"{summary['incorrect']} incorrect, {summary['no_answer']} no answer, {summary['timeout']} timed out; "
        f"accuracy {summary['accuracy']:.2%}, pass@1 {summary['pass_at_1']:.2%}"
    )
    if summary["agreement"] is not None:
        same = summary["referenced"] - len(summary["disagreements"])  # type: ignore[operator]
        click.echo(
            f"agreement with the reference verdicts (source_correct): {same}/{summary['referenced']} "
            f"= {summary['agreement']:.2%}"
        )
        for d in summary["disagreements"]:  # type: ignore[attr-defined]
            click.echo(
                f"  line {d['line']} {d['problem_id']}: truth {d['truth']!r}, extracted {d['extracted']!r} "
                f"({d['how']}): graded {d['grade']}, reference {'correct' if d['reference_correct'] else 'incorrect'}"
            )


@main.command()
@click.argument("campaigns", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG plot."
)
@click.option("--workers", type=click.IntRange(1), help="Grading subprocesses. Default: the CPU count.")
@pass_ctx
def report(
    obj: Context, campaigns: tuple[str, ...], as_json: bool, plot_path: Path | None, workers: int | None
) -> None:
    """The paper's evaluation, campaigns side by side: accuracy (pass@1) with TTC, the round-1
    majority-vote baseline, the no-answer rate, per-round answer agreement and compaction health."""
    from pacore.campaigns.status import UnknownCampaign
    from pacore.cli.display import GradingProgress, report_table
    from pacore.results.report import campaign_report, plot

    try:
        with obj.db().store() as store, GradingProgress() as grading:
            reports = [campaign_report(store, name, workers, grading.of(name)) for name in campaigns]
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    drawn = plot(reports, plot_path) if plot_path else None
    if as_json:
        click.echo(json.dumps({"campaigns": reports, "plot": drawn}))
    else:
        report_table(reports)
        if plot_path:
            click.echo(f"plot written to {plot_path}")


# -- export -----------------------------------------------------------------------------------------


@main.command()
@click.argument("campaign")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Default: stdout."
)
@click.option("--no-grade", is_flag=True, help="Do not grade the final answers (faster).")
@pass_ctx
def export(obj: Context, campaign: str, output: Path | None, no_grade: bool) -> None:
    """Write one JSONL line per run (official PaCoRe results fields plus pacore's own, with each
    finished run's grade against its ground truth)."""
    from pacore.campaigns.status import UnknownCampaign, find_campaign
    from pacore.results.export import export_lines

    with obj.db().store() as store:
        try:
            campaign_id = find_campaign(store, campaign).id
        except UnknownCampaign as exc:
            raise click.ClickException(str(exc)) from exc
        assert campaign_id is not None
        out = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            for line in export_lines(store, campaign_id, grade=not no_grade):
                out.write(line + "\n")
        finally:
            if output:
                out.close()


@main.command()
@click.argument("campaign")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Archive file. Default: campaign-ID.jsonl.gz (the campaign's id) in the current folder.",
)
@click.option("--purge", is_flag=True, help="Then delete the campaign's text from the database.")
@pass_ctx
def archive(obj: Context, campaign: str, output: Path | None, purge: bool) -> None:
    """Write a finished campaign as gzip-compressed JSONL (the export's lines); with --purge, delete its
    text (trajectories, checkpoints, round inputs) from the database once the file is written and read
    back. Statuses, answers and token counts stay."""
    from pacore.campaigns.status import UnknownCampaign
    from pacore.results.archive import ArchiveError
    from pacore.results.archive import archive as write_archive

    try:
        done = write_archive(obj.db(), campaign, output, purge)
    except (UnknownCampaign, ArchiveError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"archived {done.runs} runs of {campaign!r} to {done.path} ({done.bytes:,} bytes)")
    if done.purged_trajectories is not None:
        click.echo(f"purged the text of {done.purged_trajectories} trajectories from the database")
