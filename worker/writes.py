"""Group commit of a worker process's result writes (issue #16 item 1).

Every generation of a worker ends in one short transaction: its fenced result and the settlement of
its tokens, or its hand-back. With hundreds of generations ending per second, the commits, not the
statements, are what costs: `GroupCommit` runs the writes that arrive while a transaction is under way
together in the next one. A write never waits for a timer: alone, it commits at once; under load, it
joins the group that forms while the previous one commits. Writes keep their arrival order within a
group, so `finish_seq` (completion order) is the order in which the generations ended.

The results themselves go in one statement per group (`finish_attempts`: one row per result, in
arrival order), so that a group of K costs one statement, not K; a group of results alone runs
without a transaction around its one statement (`Database.statement`). Every other write is a
function of the store. Each is safe to run twice (fenced by attempt), as every write of
`worker.claims` is. When one of them fails inside a group, the group is rolled back and each write runs
again alone, so that one refused write fails only itself. A lost connection fails the whole group to
every caller, whose `Database.through_outages` runs its write again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pacore.store.claims import Finished, Result
from pacore.store.database import Database
from pacore.store.store import Store

log = logging.getLogger("pacore.worker")

T = TypeVar("T")
MAX_GROUP = 256  # writes in one transaction at most
Write = tuple[Callable[[Store], Any] | Result, Future[Any]]


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: queue.SimpleQueue[Write] = queue.SimpleQueue()
        self.groups = 0  # transactions committed, for tests and benchmarks
        self.writes = 0
        threading.Thread(target=self._loop, name="group-commit", daemon=True).start()

    def run(self, fn: Callable[[Store], T]) -> T:
        """Run `fn` in the next group's transaction; its result once that commits (or its exception)."""
        return self.submit(fn).result()

    def finish(self, result: Result) -> Finished:
        """Write an attempt's result in the next group's statement of results; once that commits."""
        return self.submit(result).result()

    def submit(self, write: Callable[[Store], T] | Result) -> Future[Any]:
        done: Future[Any] = Future()
        self.queue.put((write, done))
        return done

    def _loop(self) -> None:
        held: list[Write] = []  # results of a trajectory that had one in the group already: the next group
        while True:
            arrived, held = held or [self.queue.get()], []
            while len(arrived) < MAX_GROUP:
                try:
                    arrived.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            group, ids = [], set()
            for item in arrived:
                tid = item[0].trajectory_id if isinstance(item[0], Result) else None
                if tid in ids:
                    held.append(item)
                    continue
                group.append(item)
                if tid is not None:
                    ids.add(tid)
            self._commit(group)

    def _commit(self, group: list[Write]) -> None:
        writes = [write for write, _ in group]
        # results alone are one statement, which needs no transaction around it
        one = self.db.statement if all(isinstance(w, Result) for w in writes) else self.db.store
        try:
            with one() as store:
                answers = _write(store, writes)
        except Database.OUTAGES as exc:  # the connection: every caller retries
            for _, done in group:
                done.set_exception(exc)
            return
        except Exception as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
            else:  # one write refused: each runs alone, so that it fails only itself
                for item in group:
                    self._commit([item])
            return
        self.groups += 1
        self.writes += len(group)
        for (_, done), answer in zip(group, answers, strict=True):
            done.set_result(answer)


def _write(store: Store, writes: list[Callable[[Store], Any] | Result]) -> list[Any]:
    """The group's writes in one transaction: its results in one statement, then the others in their
    order. What each returned, in the group's order."""
    answers: list[Any] = [None] * len(writes)
    results = [i for i, w in enumerate(writes) if isinstance(w, Result)]
    if results:
        finished = store.finish_attempts([writes[i] for i in results])  # type: ignore[misc]
        for i, one in zip(results, finished, strict=True):
            answers[i] = one
    for i, write in enumerate(writes):
        if not isinstance(write, Result):
            answers[i] = write(store)
    return answers
