"""What one worker process shares among its generation threads: the engine, its identity, its
checkpoint recorders, and the two conditions under which generations give their trajectories back:
the process is draining (SIGTERM) or its engine stopped answering."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.checkpoint import Checkpoints
from worker.engine import Engine

log = logging.getLogger("pacore.worker")

WATCHDOG_SECONDS = 0.5


class Watched(Protocol):
    """A generation the watchdog looks after (worker/generation.py)."""

    def cut_if_overdue(self, cut: Callable[[int], bool]) -> None: ...


@dataclass
class Node:
    engine: Engine
    worker_id: str
    grace_seconds: float
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    draining: threading.Event = field(default_factory=threading.Event)
    engine_lost: threading.Event = field(default_factory=threading.Event)
    drain_deadline: float = float("inf")
    max_model_len: int | None = None  # the engine's context length: no request asks for more
    active: set[int] = field(default_factory=set)  # trajectory ids taken up (claimed or claiming): held
    claimed: dict[int, int] = field(default_factory=dict)  # trajectory id -> the attempt it generates
    superseded: set[int] = field(default_factory=set)  # claimed, but no longer ours (cancelled, re-driven)
    watched: set[Watched] = field(default_factory=set)  # generations in progress
    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: int = 1  # generations this process runs at once (--concurrency): its capacity
    batch_size: int = 1  # the most generations one message brings (PACORE_BATCH_SIZE)
    messages: int = 0  # batches taken and not yet acknowledged (their generations are in `active`)
    qos: Any = None  # the Celery consumer's prefetch control, once it consumes (worker/process.py)
    wake: Callable[[], None] | None = None  # wakes the consumer's loop
    pool: ThreadPoolExecutor | None = None  # threads for a batch's generations past its first
    writes: Any = None  # where results are written: the process's group commit (worker/writes.py)

    def bind(self, qos: Any, wake: Callable[[], None] | None = None) -> None:
        """The consumer's prefetch control (None: not consuming; a new one after each reconnection) and
        how to wake its loop (a prefetch raised while it waits must not wait for its next timer)."""
        with self.lock:
            self.qos, self.wake = qos, wake
            self._prefetch()

    def message(self, delta: int) -> None:
        """A batch message arrived (+1) or was done with (-1)."""
        with self.lock:
            self.messages += delta
            self._prefetch()

    def prefetch(self) -> int:
        """Messages the consumer may hold unacknowledged, so that capacity is counted in generations
        (a message brings a batch of them), not in Celery threads: those it holds, plus one per
        generation slot left; at least 1 (0 would mean unlimited)."""
        return max(1, self.messages + self.slots - len(self.active))

    def _prefetch(self) -> None:
        qos = self.qos
        if qos is None:
            return
        wanted = self.prefetch()
        with qos._mutex:  # applied by the consumer's loop (kombu QoS: set eventually, thread-safe)
            raised = wanted > qos.value
            qos.value = wanted
        if raised and self.wake is not None:
            self.wake()

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on a generation thread of this process (a batch's generations past its first)."""
        with self.lock:
            if self.pool is None:
                # a batch may arrive with one slot left: room for all of it past the capacity
                self.pool = ThreadPoolExecutor(self.slots + self.batch_size, "generation")
        return self.pool.submit(fn)

    def watch(self, generation: Watched) -> None:
        with self.lock:
            self.watched.add(generation)

    def unwatch(self, generation: Watched) -> None:
        with self.lock:
            self.watched.discard(generation)

    def start_watchdog(self, every: float = WATCHDOG_SECONDS) -> threading.Event:
        """Every `every` seconds, cut the streams that send nothing but should stop (cancelled, drained,
        engine down) or have timed out: the per-line guard cannot see them. Until the returned event is
        set; an engine whose reads cannot be cut (in-process) needs none."""
        stop = threading.Event()
        cut: Callable[[int], bool] | None = getattr(self.engine, "cut", None)
        if cut is None:
            return stop

        def loop() -> None:
            while not stop.wait(every):
                with self.lock:
                    watched = list(self.watched)
                for generation in watched:
                    try:
                        generation.cut_if_overdue(cut)
                    except Exception:
                        log.exception("the watchdog could not look at a generation")

        threading.Thread(target=loop, name="watchdog", daemon=True).start()
        return stop

    def begin(self, trajectory_id: int) -> bool:
        """Take up a trajectory; False if this process is already generating it (a duplicate message)."""
        with self.lock:
            if trajectory_id in self.active:
                return False
            self.active.add(trajectory_id)
            self._prefetch()
            return True

    def generating(self, trajectory_id: int, attempt: int) -> None:
        with self.lock:
            self.claimed[trajectory_id] = attempt

    def end(self, trajectory_id: int) -> None:
        with self.lock:
            self.active.discard(trajectory_id)
            self.claimed.pop(trajectory_id, None)
            self.superseded.discard(trajectory_id)
            self._prefetch()

    def holding(self) -> dict[int, int]:
        with self.lock:
            return dict(self.claimed)

    def supersede(self, trajectory_ids: list[int]) -> None:
        with self.lock:
            self.superseded.update(t for t in trajectory_ids if t in self.claimed)

    def is_superseded(self, trajectory_id: int) -> bool:
        with self.lock:
            return trajectory_id in self.superseded

    def drain(self) -> None:
        """Begin the cooperative drain: generations hand back unless they finish within the grace."""
        if not self.draining.is_set():
            self.drain_deadline = time.monotonic() + self.grace_seconds
            self.draining.set()

    def seconds_left(self) -> float:
        return self.drain_deadline - time.monotonic()
