"""`pacore submit`: a problem file becomes a campaign, its problems and its runs, in one transaction.

Submit writes problems and runs only; the scheduler creates rounds. Either everything valid is written
or (on any invalid line, without --skip-invalid) nothing is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.types.json import Json, Jsonb
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pacore.core.campaign import CampaignConfig
from pacore.core.problems import LineError, Problem
from pacore.db import Database
from pacore.models import Campaign
from pacore.problem_file import read_problems


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
            runs = _insert_runs(session, campaign_id, config.samples, config.problem_budget)
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


_PROBLEM_COLUMNS = ("campaign_id", "external_id", "messages", "ground_truth", "category", "extra", "line")
_PROBLEM_TYPES = ("int8", "text", "json", "jsonb", "text", "jsonb", "int4")


def _insert_problems(session: Session, campaign_id: int, path: Path) -> tuple[int, list[LineError]]:
    """Stream the file into the problem table with COPY, inside the session's transaction."""
    errors: list[LineError] = []
    count = 0
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY problem ({', '.join(_PROBLEM_COLUMNS)}) FROM STDIN") as copy:
        copy.set_types(_PROBLEM_TYPES)
        for item in read_problems(path):
            if isinstance(item, LineError):
                errors.append(item)
                continue
            copy.write_row(_problem_row(campaign_id, item))
            count += 1
    return count, errors


def _problem_row(campaign_id: int, p: Problem) -> tuple[Any, ...]:
    def js(value: Any) -> Jsonb | None:
        return None if value is None else Jsonb(value)

    # messages as json (key order kept); the other documents as jsonb
    return (campaign_id, p.external_id, Json(p.messages), js(p.ground_truth), p.category, js(p.extra), p.line)


def _insert_runs(session: Session, campaign_id: int, samples: int, problem_budget: int | None) -> int:
    result = session.execute(
        text(
            "INSERT INTO run (campaign_id, problem_id, sample, token_limit) "
            "SELECT :cid, p.id, s, :limit FROM problem p CROSS JOIN generate_series(0, :last) AS s "
            "WHERE p.campaign_id = :cid ORDER BY p.id, s"
        ),
        {"cid": campaign_id, "last": samples - 1, "limit": problem_budget},
    )
    return result.rowcount  # type: ignore[attr-defined]
