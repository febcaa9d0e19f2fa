"""Campaign commands: submit, status, budget, pause, resume, cancel, retry, delete, quarantine, and `run`
(the single box)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pacore.cli.app import Context, main, pass_ctx
from pacore.cli.options import PROBLEM_FILE, build_config, campaign_options, engine_url_option, report_errors
from pacore.core.schedule import parse_tokens
from pacore.core.vocabulary import CampaignStatus
from pacore.settings import Settings


@main.command()
@click.argument("file", type=PROBLEM_FILE)
@campaign_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def submit(obj: Context, file: Path, as_json: bool, **opts: Any) -> None:
    """Turn a JSONL problem file into a campaign (problems and runs; the scheduler does the rest)."""
    from pacore.campaigns.fleet import ModelChoiceError, choose_model
    from pacore.campaigns.submit import SubmitError
    from pacore.campaigns.submit import submit as do_submit

    db = obj.db()
    with db.store() as store:
        fleet = store.fleet_by_model()
    try:
        opts["model"], note = choose_model(opts["model"], fleet, obj.settings.model)
    except ModelChoiceError as exc:
        raise click.UsageError(str(exc)) from None
    config = build_config(obj.settings, opts)
    name = opts["name"] or file.stem
    try:
        done = do_submit(db, file, name, config, opts["skip_invalid"])
    except SubmitError as exc:
        report_errors(exc.errors, file)
        raise click.ClickException(str(exc)) from exc
    report_errors(done.skipped, file)
    if done.skipped:
        click.echo(f"{file}: skipped {len(done.skipped)} invalid line(s)", err=True)
    if note:
        click.echo(f"campaign {done.name!r}: {note}", err=True)
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
            models = store.fleet_by_model()
            rows = summaries(store, campaign, models)
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    fleet = [vars(f) for f in models]
    if as_json:
        click.echo(json.dumps(rows[0] if campaign else {"campaigns": rows, "fleet": fleet}))
        return
    from pacore.cli.display import status_table

    status_table(rows, fleet, obj.settings.reconcile_interval)


def _watch(obj: Context, campaign: str, interval: float) -> None:
    """A live panel on a terminal; elsewhere (a log, a pipe) one line per interval."""
    import sys
    import time
    from contextlib import nullcontext

    from rich.live import Live

    from pacore.campaigns.status import UnknownCampaign, live_view
    from pacore.cli.display import Console, watch_line, watch_panel

    samples: list[tuple[float, int]] = []
    on_terminal = sys.stdout.isatty()
    try:
        with Live(refresh_per_second=4, console=Console()) if on_terminal else nullcontext() as live:
            while True:
                with obj.db().store() as store:
                    view = live_view(store, campaign)
                samples = [*samples, (time.monotonic(), view["settled_tokens"])][-30:]
                (t0, s0), (t1, s1) = samples[0], samples[-1]
                rate = (s1 - s0) / (t1 - t0) if t1 > t0 else None
                left = view["projected_tokens_left"]
                eta = left / rate if rate and left is not None else None
                if live is not None:
                    live.update(watch_panel(view, rate, eta))
                else:
                    click.echo(watch_line(view, rate, eta))
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
            used, reserved, resumed = set_campaign_budget(store, campaign, limit)
    except UnknownCampaign as exc:
        raise click.ClickException(str(exc)) from exc
    shown = "unlimited" if limit is None else f"{limit:,}"
    click.echo(f"campaign {campaign!r}: budget {shown} tokens ({used:,} used, {reserved:,} reserved)")
    if resumed:
        click.echo(f"campaign {campaign!r}: {resumed} run(s) that ran out of budget resume")
    if limit is not None and used + reserved > limit:
        click.echo("note: already above the new budget; no new tokens will be granted", err=True)


def _control(obj: Context, action: str, campaign: str) -> None:
    from pacore.campaigns import control
    from pacore.campaigns.status import UnknownCampaign

    try:
        with obj.db().store() as store:
            changed = getattr(control, action)(store, campaign)
    except (UnknownCampaign, control.ControlError) as exc:
        raise click.ClickException(str(exc)) from exc
    if changed.unqueue and changed.model is not None:
        _unqueue(obj, changed.model, changed.unqueue)
    details = []
    if changed.runs:
        details.append(f"{changed.runs} run(s)")
    if changed.trajectories:
        details.append(f"{changed.trajectories} trajectories")
    click.echo(f"campaign {campaign!r}: {changed.status}" + (f" ({', '.join(details)})" if details else ""))


def _unqueue(obj: Context, model: str, trajectory_ids: tuple[int, ...]) -> None:
    """Take the messages of what will not be generated out of the broker (after the commit)."""
    from scheduler.app import make_app
    from scheduler.unqueue import unqueue

    try:
        removed = unqueue(make_app(obj.settings, obj.db()), model, trajectory_ids)
    except Exception as exc:  # the change is committed; workers skip such messages anyway
        click.echo(
            f"note: could not take its queued messages out of the broker ({type(exc).__name__}: {exc}); "
            "workers that take them find nothing to generate",
            err=True,
        )
        return
    if removed:
        click.echo(f"{removed} queued message(s) taken out of the broker")


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
@click.option("--failed", is_flag=True, help="Retry the failed runs (their failed last round).")
@click.option(
    "--budget-exhausted",
    is_flag=True,
    help="Resume the runs that ran out of budget (their next round is planned again).",
)
@pass_ctx
def retry(obj: Context, campaign: str, failed: bool, budget_exhausted: bool) -> None:
    """Give failed runs another go (their failed last round runs again with new attempts), or resume
    runs that ran out of budget (after `pacore budget` raised it, which resumes them itself)."""
    if not (failed or budget_exhausted):
        raise click.UsageError("say which runs to retry: --failed, --budget-exhausted, or both")
    if failed:
        _control(obj, "retry_failed", campaign)
    if budget_exhausted:
        _control(obj, "retry_exhausted", campaign)


@main.command()
@click.argument("campaign")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_ctx
def delete(obj: Context, campaign: str, yes: bool) -> None:
    """Delete a campaign and everything under it (problems, runs, rounds, trajectories, the ledger)."""
    if not yes:
        click.confirm(f"delete campaign {campaign!r} and all its results?", abort=True)
    _control(obj, "delete", campaign)


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


@main.command()
@click.argument("file", type=PROBLEM_FILE)
@campaign_options
@engine_url_option
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
        report_errors(exc.errors, file)
        raise click.ClickException(str(exc)) from exc
    if any(a["ground_truth"] is not None for a in summary["answers"]):  # graded as `pacore report` does
        from pacore.results.report import campaign_report

        with database.store() as store:
            graded = campaign_report(store, summary["name"])
        summary["accuracy"] = {
            k: graded[k]
            for k in ("accuracy", "accuracy_ci95", "majority_vote_accuracy", "problems", "runs_graded")
        }
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
