"""The processes of a fleet: `pacore scheduler` and `pacore worker`."""

from __future__ import annotations

from pathlib import Path

import click

from pacore.cli.app import Context, main, pass_ctx
from pacore.cli.options import engine_url_option

# -- processes --------------------------------------------------------------------------------------


@main.command()
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True)
@pass_ctx
def scheduler(obj: Context, concurrency: int) -> None:
    """The control worker: chord callbacks, and the dispatch tick that publishes rounds, on the `control` queue."""
    from scheduler.process import run_scheduler

    run_scheduler(obj.settings, obj.db(pre_ping=False, wait=True), concurrency)


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
        db = obj.db(pool_size=max(5, concurrency // 4), pre_ping=False, wait=True)
        run_worker(obj.settings, db, engine, served, url or f"inprocess:{model_path}", concurrency, revision)
    except EngineUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
