"""The fleet reconciler (ARCHITECTURE.md §3 rule 4): re-drives expired leases, re-publishes work whose
message may be lost, advances rounds whose callback was lost. Safe to run from several schedulers.

A lost queue is detected cheaply with an epoch key in Redis, which vanishes with the queues (a flush, a
restart without persistence, a failover to an empty replica): when the key is gone, every pending
trajectory is published again. Duplicates are harmless: a message for a row already claimed exits.
"""

from __future__ import annotations

import logging
import uuid

from celery import Celery

from scheduler.sweep import sweep

log = logging.getLogger("pacore.reconciler")

EPOCH_KEY = "pacore:epoch"


class Reconciler:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.redis = _redis_client(app)

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
        actions = sweep(self.app, queue_lost=lost)
        if actions:
            log.info("reconciled: %s", actions)
        return actions


def _redis_client(app: Celery):  # type: ignore[no-untyped-def]
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url)
