"""Group commit of a worker process's result writes (issue #16 item 1).

Every generation of a worker ends in one short transaction: its fenced result and the settlement of
its tokens, or its hand-back. With hundreds of generations ending per second, the commits, not the
statements, are what costs: `GroupCommit` runs the writes that arrive while a transaction is under way
together in the next one. A write never waits for a timer: alone, it commits at once; under load, it
joins the group that forms while the previous one commits. Writes keep their arrival order within a
group, so `finish_seq` (completion order) is the order in which the generations ended.

Each write is a function of the store that is safe to run twice (fenced by attempt), as every write
of `worker.claims` is. When one of them fails inside a group, the group is rolled back and each write
runs again alone, so that one refused write fails only itself. A lost connection fails the whole group
to every caller, whose `Database.through_outages` runs its write again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pacore.store.database import Database
from pacore.store.store import Store

log = logging.getLogger("pacore.worker")

T = TypeVar("T")
MAX_GROUP = 256  # writes in one transaction at most


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: queue.SimpleQueue[tuple[Callable[[Store], Any], Future[Any]]] = queue.SimpleQueue()
        self.groups = 0  # transactions committed, for tests and benchmarks
        self.writes = 0
        threading.Thread(target=self._loop, name="group-commit", daemon=True).start()

    def run(self, fn: Callable[[Store], T]) -> T:
        """Run `fn` in the next group's transaction; its result once that commits (or its exception)."""
        return self.submit(fn).result()

    def submit(self, fn: Callable[[Store], T]) -> Future[T]:
        done: Future[T] = Future()
        self.queue.put((fn, done))
        return done

    def _loop(self) -> None:
        while True:
            group = [self.queue.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: list[tuple[Callable[[Store], Any], Future[Any]]]) -> None:
        try:
            with self.db.store() as store:
                results = [fn(store) for fn, _ in group]
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
        for (_, done), result in zip(group, results, strict=True):
            done.set_result(result)
