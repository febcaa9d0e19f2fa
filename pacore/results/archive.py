"""`pacore archive`: a finished campaign as gzip-compressed JSONL (the lines of `pacore export`), and
optionally its text purged from the database once the archive is written and read back.

The archive is written to `FILE.partial`, read back and counted, then renamed: a FILE that exists is
complete. Purging keeps everything but the text: statuses, answers, token counts and the ledger stay,
so `pacore status` still works; trajectory text, checkpoints and round inputs go.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from pacore.db import Database
from pacore.export import export_lines
from pacore.status import find_campaign

FINISHED = ("done", "cancelled")


class ArchiveError(RuntimeError):
    pass


@dataclass(frozen=True)
class Archived:
    path: Path
    runs: int
    bytes: int
    purged_trajectories: int | None


def archive(db: Database, name: str, path: Path, purge: bool) -> Archived:
    with db.session() as session:
        campaign = find_campaign(session, name)
        campaign_id, status = campaign.id, campaign.status
        archived_to, purged_at = session.execute(
            text("SELECT archived_to, text_purged_at FROM campaign WHERE id = :id"), {"id": campaign_id}
        ).one()
    assert campaign_id is not None
    if status not in FINISHED:
        raise ArchiveError(
            f"campaign {name!r} is {status}: only a finished campaign (done or cancelled) can be archived"
        )
    if purged_at is not None:
        raise ArchiveError(
            f"campaign {name!r} was archived to {archived_to} and its text purged: that file is its archive"
        )
    if path.exists():
        raise ArchiveError(f"{path} exists: choose another output file or remove it")
    partial = path.with_name(path.name + ".partial")
    written = 0
    with db.session() as session, gzip.open(partial, "wt", encoding="utf-8") as out:
        for line in export_lines(session, campaign_id):
            out.write(line + "\n")
            written += 1
    with gzip.open(partial, "rt", encoding="utf-8") as back:
        read = sum(1 for _ in back)
    if read != written:
        partial.unlink()
        raise ArchiveError(f"the archive read back {read} lines of {written}: nothing was purged")
    os.replace(partial, path)
    with db.session() as session:
        session.execute(
            text("UPDATE campaign SET archived_to = :path WHERE id = :id"),
            {"path": str(path.resolve()), "id": campaign_id},
        )
    purged = _purge(db, campaign_id) if purge else None
    return Archived(path, written, path.stat().st_size, purged)


def _purge(db: Database, campaign_id: int) -> int:
    with db.session() as session:
        purged = session.execute(
            text(
                "UPDATE trajectory SET content = NULL, reasoning = NULL, message = NULL "
                "WHERE campaign_id = :id AND (content IS NOT NULL OR reasoning IS NOT NULL)"
            ),
            {"id": campaign_id},
        ).rowcount  # type: ignore[attr-defined]
        session.execute(
            text(
                "DELETE FROM chunk c USING trajectory t WHERE t.id = c.trajectory_id AND t.campaign_id = :id"
            ),
            {"id": campaign_id},
        )
        session.execute(
            text(
                "UPDATE round r SET input_messages = '[]'::json FROM run "
                "WHERE run.id = r.run_id AND run.campaign_id = :id"
            ),
            {"id": campaign_id},
        )
        session.execute(
            text("UPDATE campaign SET text_purged_at = now() WHERE id = :id"), {"id": campaign_id}
        )
    return int(purged)
