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

from pacore.campaigns.status import find_campaign
from pacore.core.vocabulary import CampaignStatus
from pacore.results.export import export_lines
from pacore.store.database import Database

FINISHED = (CampaignStatus.DONE, CampaignStatus.CANCELLED)


class ArchiveError(RuntimeError):
    pass


@dataclass(frozen=True)
class Archived:
    path: Path
    runs: int
    bytes: int
    purged_trajectories: int | None


def archive(db: Database, name: str, path: Path | None, purge: bool) -> Archived:
    """`path` None: `campaign-ID.jsonl.gz` in the current folder, named from the campaign's id, never its
    name (a name like `../../x` must not choose where a file is written)."""
    with db.store() as store:
        campaign = find_campaign(store, name)
        campaign_id, status = campaign.id, campaign.status
        archived_to, purged_at = store.archive_state(campaign_id)
    path = path or Path(f"campaign-{campaign_id}.jsonl.gz")
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
    with db.store() as store, gzip.open(partial, "wt", encoding="utf-8") as out:
        for line in export_lines(store, campaign_id):
            out.write(line + "\n")
            written += 1
    with gzip.open(partial, "rt", encoding="utf-8") as back:
        read = sum(1 for _ in back)
    if read != written:
        partial.unlink()
        raise ArchiveError(f"the archive read back {read} lines of {written}: nothing was purged")
    os.replace(partial, path)
    with db.store() as store:
        store.set_archived_to(campaign_id, str(path.resolve()))
    purged = None
    if purge:
        with db.store() as store:
            purged = store.purge_text(campaign_id)
    return Archived(path, written, path.stat().st_size, purged)
