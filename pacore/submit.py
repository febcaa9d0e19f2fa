"""`pacore submit`: a problem file becomes a campaign, its problems and its runs, in one transaction.

Submit writes problems and runs only; the scheduler creates rounds. Either everything valid is written
or (on any invalid line, without --skip-invalid) nothing is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pacore.core.campaign import CampaignConfig
from pacore.core.problems import LineError, Problem
from pacore.db import Database
from pacore.models import Campaign
from pacore.models import Problem as ProblemRow
from pacore.problem_file import read_problems

BATCH = 2_000


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
    try:
        with db.session() as session:
            if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
                raise CampaignExists(campaign_exists_message(name))
            campaign_id = _insert_campaign(session, name, config, path)
            problems, errors = _insert_problems(session, campaign_id, path)
            if errors and not skip_invalid:
                raise SubmitError(f"{path}: {len(errors)} invalid line(s); nothing was submitted", errors)
            if problems == 0:
                raise SubmitError(
                    f"{path}: no problems to submit" + (" (every line is invalid)" if errors else "")
                )
            runs = _insert_runs(session, campaign_id, config.samples)
            return Submitted(campaign_id, name, problems, runs, errors)
    except IntegrityError as exc:  # a concurrent submit took the name between check and insert
        raise CampaignExists(campaign_exists_message(name)) from exc


def _insert_campaign(session: Session, name: str, config: CampaignConfig, path: Path) -> int:
    row = Campaign(
        name=name,
        config=config.model_dump(),
        source=str(path),
        problem_budget=config.problem_budget,
        campaign_budget=config.campaign_budget,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def _insert_problems(session: Session, campaign_id: int, path: Path) -> tuple[int, list[LineError]]:
    errors: list[LineError] = []
    batch: list[dict[str, Any]] = []
    count = 0
    for item in read_problems(path):
        if isinstance(item, LineError):
            errors.append(item)
            continue
        batch.append(_problem_values(campaign_id, item))
        if len(batch) >= BATCH:
            count += _flush(session, batch)
    count += _flush(session, batch)
    return count, errors


def _problem_values(campaign_id: int, p: Problem) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "external_id": p.external_id,
        "messages": p.messages,
        "ground_truth": p.ground_truth,
        "category": p.category,
        "extra": p.extra,
        "line": p.line,
    }


def _flush(session: Session, batch: list[dict[str, Any]]) -> int:
    if batch:
        session.execute(insert(ProblemRow), batch)
    n = len(batch)
    batch.clear()
    return n


def _insert_runs(session: Session, campaign_id: int, samples: int) -> int:
    result = session.execute(
        text(
            "INSERT INTO run (campaign_id, problem_id, sample) "
            "SELECT :cid, p.id, s FROM problem p CROSS JOIN generate_series(0, :last) AS s "
            "WHERE p.campaign_id = :cid ORDER BY p.id, s"
        ),
        {"cid": campaign_id, "last": samples - 1},
    )
    return result.rowcount  # type: ignore[attr-defined]
