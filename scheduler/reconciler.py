"""The fleet reconciler (ARCHITECTURE.md §3 rule 4): re-drives expired leases, re-publishes work whose
message may be lost, advances rounds whose callback was lost. Safe to run from several schedulers.

A lost queue is detected cheaply with an epoch key in Redis, which vanishes with the queues (a flush, a
restart without persistence, a failover to an empty replica): when the key is gone, every pending
trajectory is published again. Duplicates are harmless: a message for a row already claimed exits.

A message can also be lost on its own: a worker fetched it and died before its claim committed (the
message waits, unacknowledged, for Redis's visibility timeout: hours). A queue is FIFO within each
priority (a list per priority), so a pending trajectory published well before the oldest message still
waiting in any of its lists is no longer in the queue; a live worker would have claimed it within
milliseconds: it is published again.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from celery import Celery

from scheduler.app import generation_queue, priority_lists, runtime
from scheduler.sweep import sweep
from scheduler.unqueue import carried

log = logging.getLogger("pacore.reconciler")

EPOCH_KEY = "pacore:epoch"


class Reconciler:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.redis = _redis_client(app)
        settings = runtime(app).settings
        self.lease = settings.lease_seconds
        # A gap between passes longer than this means this reconciler could not reach the database (or
        # was not running): nor, perhaps, could the workers' heartbeats.
        self.outage = settings.reconcile_interval + settings.lease_seconds / 2
        # Leases are judged only a full lease period after that (and after start-up): heartbeats must
        # have had their chance to extend them, or live workers' trajectories would be re-driven.
        self.trusted_from = time.monotonic() + self.lease
        self.last_ok = time.monotonic()

    def trust_leases(self) -> bool:
        now = time.monotonic()
        if now - self.last_ok > self.outage:
            self.trusted_from = now + self.lease
        self.last_ok = now
        return now >= self.trusted_from

    def queue_lost(self) -> bool:
        """True when the broker lost its queues since we last looked (or we cannot know: at start-up)."""
        if self.redis is None:
            return False  # the database is the broker: its queue is as durable as the rows
        created = self.redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
        return bool(created)

    def tick(self) -> dict[str, int]:
        lost = self.queue_lost()
        if lost:
            log.warning(
                "the broker has no epoch key: its queues may be lost; publishing all pending work again"
            )
        actions = sweep(
            self.app,
            queue_lost=lost,
            undelivered_before=self.undelivered_before(),
            trust_leases=self.trust_leases(),
        )
        if actions:
            log.info("reconciled: %s", actions)
        return actions

    def undelivered_before(self) -> dict[str, str]:
        """Per model: pending trajectories published before this moment have left their queue (the
        publication of the oldest message still queued, or now, less a lease period of slack)."""
        if self.redis is None:
            return {}
        rt = runtime(self.app)
        slack = timedelta(seconds=rt.settings.lease_seconds)
        with rt.db.store() as store:
            cutoffs = {}
            for model in store.active_models():
                try:  # the oldest message of each priority's list (scheduler/publish.py)
                    heads = [
                        head
                        for key in priority_lists(generation_queue(model))
                        if (head := _oldest_queued(self.redis.lindex(key, -1))) is not None
                    ]
                except (ValueError, KeyError, IndexError, TypeError):
                    log.warning("cannot read the oldest message queued for %s; skipping it", model)
                    continue
                since = [store.published_at_or_now(head) for head in heads or [None]]
                known = [at for at in since if at is not None]  # not: its row is gone or unstamped
                if len(known) == len(since):
                    cutoffs[model] = (min(known) - slack).isoformat()
        return cutoffs


def _oldest_queued(raw: bytes | None) -> int | None:
    """The first trajectory id of a queued generation message (`scheduler.unqueue.carried`), or None
    for an empty queue."""
    if raw is None:
        return None
    ids, _ = carried(raw)
    return ids[0] if ids else None


def _redis_client(app: Celery):  # type: ignore[no-untyped-def]
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url)
