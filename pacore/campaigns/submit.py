"""`pacore submit`: a problem file becomes a campaign, its problems and its runs, in one transaction.

Submit writes problems and runs only; the scheduler creates rounds. Either everything valid is written
or (on any invalid line, without --skip-invalid) nothing is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacore.campaigns.problem_file import read_problems
from pacore.core.campaign import CampaignConfig
from pacore.core.problems import LineError, Problem
from pacore.store.database import Database


class SubmitError(Exception):
    def __init__(self, message: str, errors: list[LineError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class CampaignExists(SubmitError):
    pass


@dataclass
class Submitted:
    campaign_id: int
    name: str
    problems: int
    runs: int
    skipped: list[LineError] = field(default_factory=list)


def campaign_exists_message(name: str) -> str:
    return (
        f"a campaign named {name!r} already exists: inspect it with `pacore status {name}`, "
        f"continue it with `pacore run FILE --name {name}` (or a running scheduler), "
        "or choose another --name"
    )


def submit(
    db: Database, path: Path, name: str, config: CampaignConfig, skip_invalid: bool = False
) -> Submitted:
    with db.store() as store:
        campaign_id = store.insert_campaign(
            name, config.model_dump(), str(path), config.problem_budget, config.campaign_budget
        )
        if campaign_id is None:  # the name is taken (also by a concurrent submit)
            raise CampaignExists(campaign_exists_message(name))
        errors: list[LineError] = []
        problems = store.copy_problems(_rows(campaign_id, read_problems(path), errors))
        if errors and not skip_invalid:
            raise SubmitError(f"{path}: {len(errors)} invalid line(s); nothing was submitted", errors)
        if problems == 0:
            raise SubmitError(
                f"{path}: no problems to submit" + (" (every line is invalid)" if errors else "")
            )
        runs = store.insert_runs(campaign_id, config.samples, config.problem_budget)
        store.wake_scheduler()
        return Submitted(campaign_id, name, problems, runs, errors)


def _rows(
    campaign_id: int, items: Iterable[Problem | LineError], errors: list[LineError]
) -> Iterator[tuple[Any, ...]]:
    """The problem rows to COPY in, streamed; invalid lines go to `errors`."""
    for item in items:
        if isinstance(item, LineError):
            errors.append(item)
            continue
        yield (
            campaign_id,
            item.external_id,
            item.messages,
            item.ground_truth,
            item.category,
            item.extra,
            item.line,
        )
