"""The processes of a fleet: `pacore scheduler` and `pacore worker`; `pacore fleet`: its demand and
live workers, and `pacore fleet autoscale`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pacore.cli.app import Context, main, pass_ctx
from pacore.cli.display import clean
from pacore.cli.options import engine_url_option

# -- processes --------------------------------------------------------------------------------------


@main.command()
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True)
@pass_ctx
def scheduler(obj: Context, concurrency: int) -> None:
    """The control worker: chord callbacks, and the dispatch tick that publishes rounds, on the `control` queue."""
    from scheduler.process import run_scheduler

    run_scheduler(obj.settings, obj.db(pre_ping=False, wait=True, fleet="scheduler"), concurrency)


@main.command()
@engine_url_option
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
@click.option(
    "--revision",
    help="The model revision the engine serves (a commit or tag), for the fleet registry: `pacore status` "
    "shows the revisions each model's live workers serve.",
)
@pass_ctx
def worker(
    obj: Context,
    engine_url: str | None,
    model: str | None,
    concurrency: int | None,
    model_path: Path | None,
    max_model_len: int | None,
    revision: str | None,
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
            engine, served = inprocess_engine(
                str(model_path), model, max_model_len, obj.settings.stream_interval
            )
        else:
            assert url is not None
            engine, served = http_engine(obj.settings, url, model, concurrency)
        # A connection for about every fourth generation thread (they touch the database per block, per
        # claim and at the end; the heartbeat batches the rest), and as many again in overflow.
        db = obj.db(pool_size=max(5, concurrency // 4), pre_ping=False, wait=True, fleet="worker")
        run_worker(obj.settings, db, engine, served, url or f"inprocess:{model_path}", concurrency, revision)
    except EngineUnavailable as exc:
        raise click.ClickException(str(exc)) from exc


# -- the fleet --------------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def fleet(ctx: click.Context, as_json: bool) -> None:
    """Per model: the demand (generation slots its queue needs now: view `fleet_demand`) beside the live
    workers and their slots. `pacore fleet autoscale` sizes a model's workers on it."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Context = ctx.obj
    with obj.db().store() as store:
        demand = store.demand_by_model()
        live = {f.model: f for f in store.fleet_by_model()}
    rows = [
        {
            "model": model,
            "demand_slots": demand.get(model, 0),
            "live_workers": live[model].workers if model in live else 0,
            "live_slots": live[model].slots if model in live else 0,
            "engines_down": live[model].engines_down if model in live else 0,
        }
        for model in sorted(set(demand) | set(live))
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no demand and no live workers")
    for r in rows:
        down = f", {r['engines_down']} with their engine down" if r["engines_down"] else ""
        click.echo(
            clean(
                f"{r['model']}: demand {r['demand_slots']} slots; {r['live_workers']} live workers, "
                f"{r['live_slots']} slots{down}"
            )
        )


@fleet.command()
@click.option("--model", required=True, help="The served model whose queue to scale for.")
@engine_url_option
@click.option("--min", "least", type=click.IntRange(0), default=0, show_default=True, help="Fewest workers.")
@click.option("--max", "most", type=click.IntRange(1), required=True, help="Most workers.")
@click.option(
    "--per-worker",
    type=click.IntRange(1),
    required=True,
    help="Each worker's concurrency: one worker per this many slots of demand (KEDA's targetQueryValue).",
)
@click.option(
    "--cooldown",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="Seconds: scale in only as far as the most workers wanted over this window (KEDA's cooldownPeriod).",
)
@click.option(
    "--interval", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Seconds between polls."
)
@click.option(
    "--drain-grace",
    type=click.FloatRange(1),
    default=3600.0,
    show_default=True,
    help="Seconds a scaled-in worker lets its generations run before it hands back what would not end.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each worker's output to DIR/worker-N.log (default: this terminal).",
)
@pass_ctx
def autoscale(
    obj: Context,
    model: str,
    engine_url: str | None,
    least: int,
    most: int,
    per_worker: int,
    cooldown: float,
    interval: float,
    drain_grace: float,
    log_dir: Path | None,
) -> None:
    """Start and drain `pacore worker` processes on this machine for one model, on its demand: ceil(demand
    / per-worker) workers within [min, max], out at once, in only by drain (SIGTERM) after the cooldown.
    SIGTERM or Ctrl-C drains every worker it started, then exits."""
    from scheduler.autoscale import Autoscaler, Plan
    from worker.process import EngineUnavailable, http_engine

    if least > most:
        raise click.BadParameter(f"--min {least} is more than --max {most}", param_hint="--min")
    url = engine_url or obj.settings.engine_url
    if not url:
        raise click.UsageError("give --engine-url (or set PACORE_ENGINE_URL): the engine its workers use")
    try:  # its workers would fail the same way, one after another: say it once, now
        engine, _ = http_engine(obj.settings, url, model, per_worker)
        engine.close()
    except EngineUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(model, url, least, most, per_worker, cooldown, interval, drain_grace, log_dir)
    sys.exit(Autoscaler(obj.db(wait=True), plan).run())
