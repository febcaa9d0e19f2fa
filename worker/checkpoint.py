"""Mid-generation checkpoints (ARCHITECTURE.md §3): what a trajectory has streamed, kept as append-only
chunk rows, so that an attempt that is lost (node reclaimed, worker drained, engine died) can be
continued by the next attempt instead of regenerated.

A generation hands its streamed text to a `Recorder`; the worker's heartbeat writes every recorder's
new text in one batch (`Checkpoints.flush`). Writes are fenced by attempt like every other write: once
a trajectory was re-driven, its old attempt can add nothing. The checkpoint an attempt continues is the
chunk rows of the earlier attempts, in order; an attempt that starts afresh deletes them first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pacore import metrics
from pacore.store.database import Database


@dataclass(frozen=True)
class Checkpoint:
    text: str = ""
    tokens: int = 0
    ids: tuple[int, ...] | None = ()  # the token ids of `text`, as the engine generated them (None: unknown)


class Recorder:
    """The text one attempt has streamed, as (text, tokens, token ids) pieces not yet written, and its
    totals. The token ids are kept while every piece has them (an engine that sends none: None)."""

    def __init__(self, trajectory_id: int, attempt: int, base: Checkpoint) -> None:
        self.trajectory_id, self.attempt, self.base = trajectory_id, attempt, base
        self.lock = threading.Lock()
        self.parts: list[str] = []  # this attempt's kept text
        self.part_ids: list[int] | None = []  # its token ids
        self.kept = 0  # its tokens
        self.wasted = 0  # tokens streamed and then discarded (started afresh)
        self.pending: list[tuple[str, int, list[int] | None]] = []
        self.seq = 0

    def add(self, raw: str, tokens: int, ids: list[int] | None = None) -> None:
        """`tokens` streamed with `raw`; `ids` their token ids (None: the engine sent none)."""
        with self.lock:
            self.parts.append(raw)
            self.kept += tokens
            if self.part_ids is not None:
                self.part_ids = None if ids is None and (raw or tokens) else [*self.part_ids, *(ids or [])]
            if raw or tokens or ids:
                self.pending.append((raw, tokens, ids))

    @property
    def text(self) -> str:
        """Everything the trajectory has generated so far: the checkpoint, then this attempt's text."""
        return self.base.text + "".join(self.parts)

    @property
    def ids(self) -> tuple[int, ...] | None:
        """The token ids of `text`, when every piece of it came with them."""
        if self.base.ids is None or self.part_ids is None:
            return None
        return (*self.base.ids, *self.part_ids)

    @property
    def tokens(self) -> int:
        return self.base.tokens + self.kept

    @property
    def spent(self) -> int:
        """Tokens this attempt streamed, kept or not."""
        return self.kept + self.wasted

    def charge(self, tokens: int) -> None:
        """Waste that was not streamed: what the engine may have generated past what arrived."""
        with self.lock:
            self.wasted += tokens

    def restart(self) -> None:
        """Start afresh: the checkpoint and everything streamed so far become waste."""
        with self.lock:
            self.wasted += self.kept
            self.base, self.parts, self.part_ids, self.kept, self.pending = Checkpoint(), [], [], 0, []

    def take(self) -> tuple[dict[str, object], int] | None:
        """The next chunk row to write (all pending pieces in one), and how many pieces it covers."""
        with self.lock:
            if not self.pending:
                return None
            row = {
                "tid": self.trajectory_id,
                "attempt": self.attempt,
                "seq": self.seq,
                "text": "".join(p[0] for p in self.pending),
                "tokens": sum(p[1] for p in self.pending),
                "token_ids": None
                if any(p[2] is None for p in self.pending)
                else [t for p in self.pending for t in p[2] or []],
                "spent": self.spent,
            }
            return row, len(self.pending)

    def written(self, pieces: int) -> None:
        with self.lock:
            del self.pending[:pieces]
            self.seq += 1


class Checkpoints:
    """The recorders of one worker process; `flush` writes them all in one transaction."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flushing = threading.Lock()  # one flush or restart at a time: none sees a half-done other
        self.live: dict[int, Recorder] = {}
        self.chunks_written = 0

    def open(self, recorder: Recorder) -> Recorder:
        with self.lock:
            self.live[recorder.trajectory_id] = recorder
        return recorder

    def close(self, recorder: Recorder) -> None:
        """No flush writes for the recorder once this returns. It waits for a flush under way: the
        statement that then writes the trajectory's result deletes its chunks, and would not see rows a
        flush committed after that statement began (a checkpoint left behind)."""
        with self.flushing, self.lock:
            if self.live.get(recorder.trajectory_id) is recorder:
                del self.live[recorder.trajectory_id]

    def restart(self, db: Database, recorder: Recorder) -> None:
        """Start the recorder's attempt afresh: its checkpoint rows go, its text becomes waste."""
        with self.flushing:
            recorder.restart()
            with db.store() as store:
                store.discard_checkpoint(recorder.trajectory_id, recorder.attempt)

    def flush(self, db: Database, only: Recorder | None = None) -> int:
        with self.flushing:
            return self._flush(db, only)

    def _flush(self, db: Database, only: Recorder | None) -> int:
        """Append every recorder's new text as one chunk row each, and record what each attempt has
        spent (settlement of a lost attempt counts it). Rows of attempts that were re-driven meanwhile
        are dropped: the row lock taken by the UPDATE fences them against a concurrent re-drive."""
        with self.lock:
            recorders = [only] if only is not None else list(self.live.values())
        taken = [(r, *t) for r in recorders if (t := r.take()) is not None]
        if not taken:
            return 0
        rows = [row for _, row, _ in taken]
        with db.store() as store:
            live = store.record_streamed(
                [r["tid"] for r in rows], [r["attempt"] for r in rows], [r["spent"] for r in rows]
            )
            kept = [r for r in rows if r["tid"] in live]
            if kept:
                store.append_chunks(kept)
        for recorder, _, pieces in taken:
            recorder.written(pieces)
        self.chunks_written += len(kept)
        metrics.CHECKPOINT_CHUNKS.inc(len(kept))
        return len(kept)
