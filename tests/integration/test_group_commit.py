"""Group commit of result writes (issue #16 item 1, worker/writes.py) on a real PostgreSQL: the writes
that arrive while a transaction commits go together in the next one, in their arrival order (the
completion order `finish_seq` records), each fenced and settled once; a refused write fails only itself."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from pacore.store.base import StoreError
from pacore.store.claims import Result
from pacore.store.store import Store
from tests.integration.test_fencing import result, started_round
from worker import claims
from worker.writes import GroupCommit


def test_writes_arriving_during_a_commit_go_together_in_their_order_each_settled_once(
    database, tmp_path: Path
) -> None:
    publish = started_round(database, tmp_path, k=16)
    held = claims.claim_batch(database, publish.trajectories, "w", 60)
    assert all(held), "one transaction claims the whole batch"
    writes = GroupCommit(database)
    order = [5, 3, 15, 9, 1, 2, 4, 6, 7, 8, 10, 11, 12, 13, 14]  # not the claim order
    with writer_busy(writes, lambda store: claims.finish(_In(store), held[0], "w", result(1), None)) as first:
        before = database.sent.statements
        futures = [first] + [writes.submit(_row(held[i], i + 1)) for i in order]
    assert all(f.result(30).written for f in futures[1:]) and futures[0].result(30), "every result written"
    assert (writes.groups, writes.writes) == (2, 16)  # the first alone, then the 15 that queued
    assert database.sent.statements - before == 2, "the first's statement, then one for the 15 results"

    ids = [held[0].trajectory_id] + [held[i].trajectory_id for i in order]
    with database.engine.begin() as s:
        seq = dict(
            s.execute(text("SELECT id, finish_seq FROM trajectory WHERE id = ANY(:i)"), {"i": ids}).all()
        )
        ledger = s.execute(
            text("SELECT count(*) FROM attempt WHERE trajectory_id = ANY(:i)"), {"i": ids}
        ).scalar()
        used = s.execute(
            text("SELECT tokens_used FROM run WHERE id = :r"), {"r": held[0].holder.run_id}
        ).scalar()
    assert sorted(ids, key=seq.__getitem__) == ids, "finish_seq follows the order the writes arrived"
    assert ledger == 16
    assert used == sum(range(1, 17))  # result(n) completes n tokens: 1 + 2 + ... + 16


def test_a_second_result_of_a_trajectory_waits_for_the_next_group(database, tmp_path: Path) -> None:
    """A late duplicate of a result (the same attempt written twice) cannot share the first's statement:
    it goes in the next group, where the fence refuses it."""
    publish = started_round(database, tmp_path, k=2)
    held = claims.claim_batch(database, publish.trajectories, "w", 60)
    writes = GroupCommit(database)
    with writer_busy(writes) as first:
        futures = [
            first,
            writes.submit(_row(held[0], 3)),
            writes.submit(_row(held[1], 4)),
            writes.submit(_row(held[0], 3)),
        ]
    assert [f.result(30).written for f in futures[1:]] == [True, True, False]
    assert (writes.groups, writes.writes) == (3, 4)


def test_a_refused_write_fails_only_itself(database, tmp_path: Path) -> None:
    publish = started_round(database, tmp_path, k=3)
    held = claims.claim_batch(database, publish.trajectories, "w", 60)
    writes = GroupCommit(database)

    def refused(store: Store) -> None:
        with store.isolated():
            store.conn.execute("SELECT 1 / 0")

    with writer_busy(writes, lambda store: claims.finish(_In(store), held[0], "w", result(1), None)) as first:
        futures = [
            first,
            writes.submit(refused),
            writes.submit(lambda store: claims.finish(_In(store), held[1], "w", result(2), None)),
            writes.submit(lambda store: claims.finish(_In(store), held[2], "w", result(3), None)),
        ]
    assert futures[0].result(30) and futures[2].result(30) and futures[3].result(30)
    with pytest.raises(StoreError, match="division by zero"):
        futures[1].result(30)
    with database.engine.begin() as s:
        done = s.execute(
            text("SELECT count(*) FROM trajectory WHERE status = 'done' AND id = ANY(:i)"),
            {"i": [c.trajectory_id for c in held]},
        ).scalar()
    assert done == 3
    assert (writes.groups, writes.writes) == (3, 3)  # the first; the group of 3 rolled back: 2 alone


@contextmanager
def writer_busy(
    writes: GroupCommit, first: Callable[[Store], Any] = lambda store: None
) -> Iterator[Future[Any]]:
    """The writer busy with `first` until the block ends: what the block submits queues meanwhile and
    goes in the groups after it. Yields `first`'s future."""
    started, queued = threading.Event(), threading.Event()

    def hold(store: Store) -> Any:
        started.set()
        queued.wait(10)
        return first(store)

    done = writes.submit(hold)
    assert started.wait(10), "the writer took the first write"
    try:
        yield done
    finally:
        queued.set()


def _row(claim: claims.Claim, n: int) -> Result:
    """The row `claims.finish` writes for `result(n)`."""
    return Result(
        claim.trajectory_id,
        claim.attempt,
        claim.holder.run_id,
        "w",
        "done",
        f" The answer is \\boxed{{{n}}}.",
        "thinking",
        "stop",
        5,
        n,
        None,
        n,
        0,
        5,
    )


class _In:
    """The store of the group's transaction, as the door `claims.finish` writes through."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, fn):  # type: ignore[no-untyped-def]
        return fn(self.store)

    def finish(self, result):  # type: ignore[no-untyped-def]
        return self.store.finish_attempts([result])[0]
