"""Options and helpers the campaign commands share: campaign settings, problem files, their errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pacore.core.campaign import CampaignConfig
from pacore.core.problems import LineError
from pacore.core.schedule import (
    MAX_POOL,
    MAX_SAMPLES,
    MAX_TRAJECTORY_TOKENS,
    PRESETS,
    SEED_MAX,
    SEED_MIN,
    parse_rounds,
    parse_tokens,
)
from pacore.core.urls import BadURL, engine_root
from pacore.settings import Settings


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


def engine_url_option(f: Any) -> Any:
    """--engine-url: the server root or its `.../v1` base URL, checked at once."""

    def check(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        try:
            return None if value is None else engine_root(value)
        except BadURL as exc:
            raise click.BadParameter(str(exc), param=param) from None

    return click.option(
        "--engine-url",
        callback=check,
        help="The OpenAI-compatible engine: its root or its /v1 base URL. Default: PACORE_ENGINE_URL.",
    )(f)


def _name(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter(
            "the campaign name is empty: give one, or leave --name out for the file's name"
        )
    if any(not c.isprintable() for c in value):
        raise click.BadParameter(f"the campaign name {value!r} holds control characters: use printable ones")
    return value


def campaign_options(f: Any) -> Any:
    options = [
        click.option(
            "--name", callback=_name, help="Campaign name (unique). Default: the file name without extension."
        ),
        click.option("--preset", type=click.Choice(list(PRESETS)), help="low=[4], medium=[16], high=[32,4]."),
        click.option("--rounds", callback=_rounds, help="Custom K per round, e.g. 32,4 (final 1 implicit)."),
        click.option(
            "--samples",
            type=click.IntRange(1, MAX_SAMPLES),
            default=1,
            show_default=True,
            help="Independent runs per problem.",
        ),
        click.option("--model", help="Served model name. Default: PACORE_MODEL."),
        click.option(
            "--max-tokens",
            type=click.IntRange(1, MAX_TRAJECTORY_TOKENS),
            help="Per-trajectory completion cap.",
        ),
        click.option("--temperature", type=click.FloatRange(0, 2), default=1.0, show_default=True),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True),
        click.option(
            "--seed",
            type=click.IntRange(SEED_MIN, SEED_MAX),
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
            type=click.IntRange(1, MAX_POOL),
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


def report_errors(errors: list[LineError], path: Path, limit: int = 50) -> None:
    for error in errors[:limit]:
        click.echo(f"{path}: {error}", err=True)
    if len(errors) > limit:
        click.echo(f"{path}: ... and {len(errors) - limit} more invalid line(s)", err=True)


PROBLEM_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
