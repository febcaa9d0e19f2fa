"""Admission control (ARCHITECTURE.md §3 rule 8): keep about `admission_factor` times what the live fleet
can run in flight (published and not finished), never more, so the broker stays small however large the
campaign, and budgets are reserved just in time.

The scheduler's dispatch tick measures the fleet (registered workers whose heartbeat is fresh, times
their concurrency) and what is in flight, once per tick; between ticks, publishing takes from the room
this leaves (`take`). Later rounds of started runs go first: the chord callback publishes the next
round at once, counted against the room (with the usual non-increasing K it replaces at least as much
work as it adds), and the tick publishes anything unpublished (latest rounds first) before it starts
new runs, which it does only within the room, round-robin across campaigns. Several
schedulers each keep their own count, so together they may overshoot by their number; the bound is a
soft one by that factor, never a correctness matter.
"""

from __future__ import annotations

import threading

from pacore.settings import Settings
from pacore.store.store import Store


class Admission:
    def __init__(self, settings: Settings) -> None:
        self.factor, self.floor = settings.admission_factor, settings.admission_floor
        self.stale = settings.lease_seconds
        self.lock = threading.Lock()
        self.room = 0
        self.capacity = 0
        self.in_flight = 0
        self.last_campaign = 0  # the campaign whose run was started last: the next turn is after it
        self.publishing = 0  # forced by callbacks and not yet stamped published: not in the count yet

    def refresh(self, store: Store) -> int:
        """Measure the fleet and what is in flight; returns the room."""
        capacity = store.fleet_capacity(self.stale)
        in_flight = store.count_in_flight()
        bound = max(self.floor, int(self.factor * capacity))
        with self.lock:
            self.capacity, self.in_flight = int(capacity), int(in_flight)
            self.room = max(0, bound - self.in_flight - self.publishing)
            return self.room

    def take(self, n: int) -> bool:
        """Reserve room for `n` trajectories to publish now; False when they do not fit."""
        with self.lock:
            if n > self.room:
                return False
            self.room -= n
            return True

    def force(self, n: int) -> None:
        """Count `n` published regardless of room: a later round of a started run, which goes first.
        Until `stamped(n)`, a refresh counts them too (a tick between the callback's commit and its
        publish stamp would not see them in flight)."""
        with self.lock:
            self.room -= n
            self.publishing += n

    def stamped(self, n: int) -> None:
        """The `n` forced ones are stamped published (or their publish failed): the count sees them."""
        with self.lock:
            self.publishing -= n

    def left(self) -> int:
        with self.lock:
            return self.room
