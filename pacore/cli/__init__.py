"""The `pacore` command. Settings are built here, once, and passed down.

The control plane (`scheduler`) and the workers (`worker`) are imported inside the commands that need
them, so that `pacore submit` and `pacore status` need neither Celery workers nor an engine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from pacore import logs
from pacore.core.campaign import CampaignConfig
from pacore.core.problems import LineError
from pacore.core.schedule import PRESETS, parse_rounds, parse_tokens
from pacore.core.vocabulary import CampaignStatus
from pacore.settings import Settings
from pacore.store.database import Database, SchemaError


class Context:
    """Per-invocation state: the settings, and the database once a command asks for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None

    def db(self, require_schema: bool = True, pool_size: int = 5, pre_ping: bool = True) -> Database:
        if self._db is None:
            self._db = Database.from_settings(self.settings, pool_size, pre_ping)
        if require_schema:
            try:
                self._db.require_schema()
            except SchemaError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._db


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.version_option(package_name="pacore")
@click.pass_context
def main(ctx: click.Context) -> None:
    """pacore: PaCoRe test-time-compute campaigns on a job queue (see README.md)."""
    try:
        settings = Settings()
    except ValidationError as exc:  # named and explained, without the values: they may be secrets
        problems = "; ".join(
            f"PACORE_{'_'.join(map(str, e['loc'])).upper() or '*'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise click.ClickException(f"invalid setting: {problems}") from exc
    logs.configure(settings.log_level, settings.log_format)
    ctx.obj = Context(settings)


# -- db ---------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(obj: Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    database = obj.db(require_schema=False)
    database.upgrade(revision)
    click.echo(f"database schema at {database.current_revision()}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(obj: Context, revision: str) -> None:
    """Revert migrations down to REVISION (`base` removes everything)."""
    database = obj.db(require_schema=False)
    database.downgrade(revision)
    click.echo(f"database schema at {database.current_revision() or 'base'}")


@db.command("current")
@pass_ctx
def db_current(obj: Context) -> None:
    """Print the schema revision of the database."""
    click.echo(obj.db(require_schema=False).current_revision() or "base (no schema: run `pacore db upgrade`)")


# -- submit -----------------------------------------------------------------------------------------


def _tokens(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_tokens(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from exc


def _rounds(_ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return parse_rounds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from exc


def campaign_options(f: Any) -> Any:
    options = [
        click.option("--name", help="Campaign name (unique). Default: the file name without extension."),
        click.option("--preset", type=click.Choice(list(PRESETS)), help="low=[4], medium=[16], high=[32,4]."),
        click.option("--rounds", callback=_rounds, help="Custom K per round, e.g. 32,4 (final 1 implicit)."),
        click.option(
            "--samples",
            type=click.IntRange(1, 4096),
            default=1,
            show_default=True,
            help="Independent runs per problem.",
        ),
        click.option("--model", help="Served model name. Default: PACORE_MODEL."),
        click.option("--max-tokens", type=click.IntRange(1), help="Per-trajectory completion cap."),
        click.option("--temperature", type=click.FloatRange(0, 2), default=1.0, show_default=True),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True),
        click.option(
            "--seed",
            type=int,
            default=42,
            show_default=True,
            help="Orders messages and samples pools; never sent as the sampling seed.",
        ),
        click.option(
            "--reproducible-sampling",
            is_flag=True,
            help="Send a per-trajectory sampling seed derived from --seed.",
        ),
        click.option(
            "--pass-truncated",
            is_flag=True,
            help="Deviation from the official pipeline: a trajectory with empty content passes its "
            "reasoning on (unstripped) instead of giving no reference.",
        ),
        click.option(
            "--pool",
            type=click.IntRange(1),
            help="Round-1 pool: N round-1 trajectories per problem generated once (or reused from a campaign "
            "with the same problems, model and sampling); each run samples K1 of them.",
        ),
        click.option("--problem-budget", callback=_tokens, help="TTC limit per run, e.g. 2M."),
        click.option("--campaign-budget", callback=_tokens, help="TTC limit for the campaign, e.g. 500M."),
        click.option(
            "--skip-invalid", is_flag=True, help="Submit the valid lines and report the invalid ones."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_config(settings: Settings, opts: dict[str, Any]) -> CampaignConfig:
    if opts["preset"] and opts["rounds"]:
        raise click.UsageError("give --preset or --rounds, not both")
    rounds = opts["rounds"] or PRESETS[opts["preset"] or "low"]
    if opts.get("pool") is not None and opts["pool"] < rounds[0]:
        raise click.BadParameter(
            f"{opts['pool']} is smaller than round 1's K={rounds[0]}: each run samples K1 of the pool",
            param_hint="--pool",
        )
    return CampaignConfig(
        rounds=rounds,
        samples=opts["samples"],
        model=opts["model"] or settings.model,
        max_tokens=opts["max_tokens"],
        temperature=opts["temperature"],
        top_p=opts["top_p"],
        seed=opts["seed"],
        problem_budget=opts["problem_budget"],
        campaign_budget=opts["campaign_budget"],
        pass_truncated=opts["pass_truncated"],
        reproducible_sampling=opts["reproducible_sampling"],
        pool=opts["pool"],
    )


def _report_errors(errors: list[LineError], path: Path, limit: int = 50) -> None:
    for error in errors[:limit]:
        click.echo(f"{path}: {error}", err=True)
    if len(errors) > limit:
        click.echo(f"{path}: ... and {len(errors) - limit} more invalid line(s)", err=True)


PROBLEM_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@main.command()
@click.argument("file", type=PROBLEM_FILE)
@campaign_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def submit(obj: Context, file: Path, as_json: bool, **opts: Any) -> None:
    """Turn a JSONL problem file into a campaign (problems and runs; the scheduler does the rest)."""
    from pacore.campaigns.submit import SubmitError
    from pacore.campaigns.submit import submit as do_submit

    config = build_config(obj.settings, opts)
    name = opts["name"] or file.stem
    try:
        done = do_submit(obj.db(), file, name, config, opts["skip_invalid"])
    except SubmitError as exc:
        _report_errors(exc.errors, file)
        raise click.ClickException(str(exc)) from exc
    _report_errors(done.skipped, file)
    if done.skipped:
        click.echo(f"{file}: skipped {len(done.skipped)} invalid line(s)", err=True)
    result = {
        "campaign_id": done.campaign_id,
        "name": done.name,
        "problems": done.problems,
        "runs": done.runs,
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"campaign {done.name!r} (id {done.campaign_id}): {done.problems} problems, {done.runs} runs"
        )


# -- status -----------------------------------------------------------------------------------------


@main.command()
@click.argument("campaign", required=False)
@click.argument("problem_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", is_flag=True, help="A live view of the campaign until it ends (Ctrl-C stops).")
@click.option(
    "--interval", type=click.FloatRange(0.2), default=2.0, show_default=True, help="--watch refresh, s."
)
@pass_ctx
def status(
    obj: Context, campaign: str | None, problem_id: str | None, as_json: bool, watch: bool, interval: float
) -> None:
    """Campaigns with problems, runs and trajectories by status, and tokens. With a PROBLEM_ID: that
    problem's runs, rounds and trajectories. With --watch: a live view of one campaign."""
    from pacore.campaigns.status import UnknownCampaign, summaries

    if watch and (campaign is None or problem_id or as_json):
        raise click.UsageError("--watch takes one CAMPAIGN, without PROBLEM_ID or --json")
    if watch:
        assert campaign is not None
        _watch(obj, campaign, interval)
        return
    if problem_id:
        assert campaign is not None
        from pacore.campaigns.status import problem_detail

        try:
            with obj.db().store() as store:
                detail = problem_detail(store, campaign, problem_id)
        except UnknownCampaign as exc:
            raise click.ClickException(str(exc)) from exc
        if as_json:
            click.echo(json.dumps(detail))
        else:
            from pacore.cli.display import problem_view

            problem_view(detail)
        return
    try:
        with obj.db().store() as store:
            rows = summaries(store, campaign)
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(rows[0] if campaign else {"campaigns": rows}))
        return
    from pacore.cli.display import status_table

    status_table(rows)


def _watch(obj: Context, campaign: str, interval: float) -> None:
    import time

    from rich.live import Live

    from pacore.campaigns.status import UnknownCampaign, live_view
    from pacore.cli.display import watch_panel

    samples: list[tuple[float, int]] = []
    try:
        with Live(refresh_per_second=4) as live:
            while True:
                with obj.db().store() as store:
                    view = live_view(store, campaign)
                samples = [*samples, (time.monotonic(), view["settled_tokens"])][-30:]
                (t0, s0), (t1, s1) = samples[0], samples[-1]
                rate = (s1 - s0) / (t1 - t0) if t1 > t0 else None
                left = view["projected_tokens_left"]
                eta = left / rate if rate and left is not None else None
                live.update(watch_panel(view, rate, eta))
                if view["status"] in (CampaignStatus.DONE, CampaignStatus.CANCELLED):
                    return
                time.sleep(interval)
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        return


# -- budget -----------------------------------------------------------------------------------------


@main.command()
@click.argument("campaign")
@click.option(
    "--campaign-budget", "budget", required=True, help="New campaign budget (2M, 500k, ...), or `none`."
)
@pass_ctx
def budget(obj: Context, campaign: str, budget: str) -> None:
    """Change a campaign's token budget while it runs. Lowering it below what is used and reserved
    stops new grants; nothing running is killed."""
    from pacore.campaigns.control import set_campaign_budget
    from pacore.campaigns.status import UnknownCampaign

    try:
        limit = None if budget.lower() == "none" else parse_tokens(budget)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--campaign-budget") from exc
    try:
        with obj.db().store() as store:
            used, reserved = set_campaign_budget(store, campaign, limit)
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    shown = "unlimited" if limit is None else f"{limit:,}"
    click.echo(f"campaign {campaign!r}: budget {shown} tokens ({used:,} used, {reserved:,} reserved)")
    if limit is not None and used + reserved > limit:
        click.echo("note: already above the new budget; no new tokens will be granted", err=True)


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


def _control(obj: Context, action: str, campaign: str) -> None:
    from pacore.campaigns import control
    from pacore.campaigns.status import UnknownCampaign

    try:
        with obj.db().store() as store:
            changed = getattr(control, action)(store, campaign)
    except (UnknownCampaign, control.ControlError) as exc:
        raise click.ClickException(str(exc)) from exc
    details = []
    if changed.runs:
        details.append(f"{changed.runs} run(s)")
    if changed.trajectories:
        details.append(f"{changed.trajectories} trajectories")
    click.echo(f"campaign {campaign!r}: {changed.status}" + (f" ({', '.join(details)})" if details else ""))


@main.command()
@click.argument("campaign")
@pass_ctx
def pause(obj: Context, campaign: str) -> None:
    """Stop starting work for the campaign; generations already running finish."""
    _control(obj, "pause", campaign)


@main.command()
@click.argument("campaign")
@pass_ctx
def resume(obj: Context, campaign: str) -> None:
    """Continue a paused campaign; nothing finished is generated again."""
    _control(obj, "resume", campaign)


@main.command()
@click.argument("campaign")
@pass_ctx
def cancel(obj: Context, campaign: str) -> None:
    """Cancel the campaign: its running generations stop (workers learn it from their next heartbeat)
    and everything unfinished is marked cancelled; finished results stay."""
    _control(obj, "cancel", campaign)


@main.command()
@click.argument("campaign")
@click.option(
    "--failed", is_flag=True, required=True, help="Retry the failed runs (their failed last round)."
)
@pass_ctx
def retry(obj: Context, campaign: str, failed: bool) -> None:
    """Give failed runs another go: their failed last round runs again with new attempts."""
    _control(obj, "retry_failed", campaign)


@main.command()
@click.argument("campaign")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_ctx
def delete(obj: Context, campaign: str, yes: bool) -> None:
    """Delete a campaign and everything under it (problems, runs, rounds, trajectories, the ledger)."""
    if not yes:
        click.confirm(f"delete campaign {campaign!r} and all its results?", abort=True)
    _control(obj, "delete", campaign)


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
    from pacore.cli.display import report_table
    from pacore.results.report import campaign_report, plot

    try:
        with obj.db().store() as store:
            reports = [campaign_report(store, name, workers) for name in campaigns]
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    drawn = plot(reports, plot_path) if plot_path else None
    if as_json:
        click.echo(json.dumps({"campaigns": reports, "plot": drawn}))
    else:
        report_table(reports)
        if plot_path:
            click.echo(f"plot written to {plot_path}")


@main.group()
def quarantine() -> None:
    """Runs held back because one of their trajectories coincided with engine deaths on two workers."""


@quarantine.command("lift")
@click.argument("campaign")
@pass_ctx
def quarantine_lift(obj: Context, campaign: str) -> None:
    """Put the campaign's quarantined runs back to work (after fixing what crashed the engines)."""
    from pacore.campaigns.control import lift_quarantine
    from pacore.campaigns.status import UnknownCampaign

    try:
        with obj.db().store() as store:
            lifted = lift_quarantine(store, campaign)
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    for run_id, reason in lifted:
        click.echo(f"run {run_id}: quarantine lifted ({reason})")
    click.echo(f"campaign {campaign!r}: {len(lifted)} quarantined run(s) back to work")


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
    help="Archive file. Default: CAMPAIGN.jsonl.gz in the current folder.",
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

    path = output or Path(f"{campaign}.jsonl.gz")
    try:
        done = write_archive(obj.db(), campaign, path, purge)
    except (UnknownCampaign, ArchiveError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"archived {done.runs} runs of {campaign!r} to {done.path} ({done.bytes:,} bytes)")
    if done.purged_trajectories is not None:
        click.echo(f"purged the text of {done.purged_trajectories} trajectories from the database")


# -- processes --------------------------------------------------------------------------------------


@main.command()
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True)
@pass_ctx
def scheduler(obj: Context, concurrency: int) -> None:
    """The control worker: chord callbacks and the dispatch tick (Celery beat), on the `control` queue."""
    from scheduler.process import run_scheduler

    run_scheduler(obj.settings, obj.db(pre_ping=False), concurrency)


@main.command()
@click.option("--engine-url", help="The OpenAI-compatible engine. Default: PACORE_ENGINE_URL.")
@click.option("--model", help="The served model to take work for. Default: the engine's only model.")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    help="Concurrent generations. Default: PACORE_WORKER_CONCURRENCY.",
)
@click.option(
    "--model-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run vLLM's async engine in this process on this checkpoint instead of talking to a server.",
)
@click.option(
    "--max-model-len", type=click.IntRange(1), help="With --model-path: the engine's context length."
)
@pass_ctx
def worker(
    obj: Context,
    engine_url: str | None,
    model: str | None,
    concurrency: int | None,
    model_path: Path | None,
    max_model_len: int | None,
) -> None:
    """A GPU worker: takes `generate` tasks for one served model and streams them from its engine."""
    from worker.process import EngineUnavailable, http_engine, inprocess_engine, run_worker

    url = engine_url or obj.settings.engine_url
    if not url and not model_path:
        raise click.UsageError(
            "give --engine-url (or set PACORE_ENGINE_URL), or --model-path for an in-process engine"
        )
    concurrency = concurrency or obj.settings.worker_concurrency
    try:
        if model_path:
            engine, served = inprocess_engine(str(model_path), model, max_model_len)
        else:
            assert url is not None
            engine, served = http_engine(obj.settings, url, model, concurrency)
        # A connection for about every fourth generation thread (they touch the database per block, per
        # claim and at the end; the heartbeat batches the rest), and as many again in overflow.
        db = obj.db(pool_size=max(5, concurrency // 4), pre_ping=False)
        run_worker(obj.settings, db, engine, served, url or f"inprocess:{model_path}", concurrency)
    except EngineUnavailable as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("file", type=PROBLEM_FILE)
@campaign_options
@click.option("--engine-url", help="The OpenAI-compatible engine. Default: PACORE_ENGINE_URL.")
@click.option(
    "--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes to start."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    help="Generations per worker. Default: PACORE_WORKER_CONCURRENCY.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@pass_ctx
def run(
    obj: Context,
    file: Path,
    engine_url: str | None,
    workers: int,
    concurrency: int | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Submit (or resume) FILE and solve it on this machine: scheduler and workers as child processes."""
    from pacore.cli.single_box import RunError, run_campaign

    url = engine_url or obj.settings.engine_url
    if not url:
        raise click.UsageError("give --engine-url (or set PACORE_ENGINE_URL)")
    if not opts["model"]:
        opts["model"] = _served_model(obj.settings, url)
    database = obj.db(require_schema=False)
    database.upgrade()
    config = build_config(obj.settings, opts)
    try:
        summary = run_campaign(
            obj.settings,
            database,
            file,
            opts["name"] or file.stem,
            config,
            opts["skip_invalid"],
            url,
            workers,
            concurrency or obj.settings.worker_concurrency,
        )
    except RunError as exc:
        _report_errors(exc.errors, file)
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary))
    else:
        from pacore.cli.display import run_summary

        run_summary(summary)


def _served_model(settings: Settings, url: str) -> str:
    """The engine's only served model, for `run` without --model."""
    from worker.engine import OpenAIEngine
    from worker.process import EngineUnavailable, choose_model, wait_for_engine

    api_key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
    engine = OpenAIEngine(url, api_key)
    try:
        wait_for_engine(engine)
        return choose_model(engine, None)
    except EngineUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.close()
