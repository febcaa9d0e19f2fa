"""A clean broker (issue #16 item 4): the generation messages of trajectories that nothing will generate
any more (their campaign was cancelled or deleted) are taken out of their model's queue, so that no
worker spends a claim on them and Redis does not keep them.

A queue is a Redis list per priority (kombu's Redis transport); each message is a JSON envelope whose
body holds the task's arguments: a batch of (trajectory id, attempt) pairs for `pacore.generate_batch`,
one pair for `pacore.generate`. A message goes when every trajectory it carries is one of those given
(a batch holds one round's trajectories, so they go together), with its chord's keys in the result
backend (that chord will never complete; a round of one batch, a task with a linked callback, has
none). A message a worker has taken already is not in the list: its claim finds the trajectory
cancelled (or gone) and the worker moves on. With the database as broker (no Redis), nothing is taken
out: those workers find nothing to claim, as above.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable

from celery import Celery

from scheduler.app import generation_queue, priority_lists

log = logging.getLogger("pacore.scheduler")


def unqueue(app: Celery, model: str, trajectory_ids: Iterable[int]) -> int:
    """Remove the queued messages of `model` that carry only these trajectories; returns how many."""
    gone = set(trajectory_ids)
    if not gone or not app.conf.broker_url.startswith(("redis://", "rediss://")):
        return 0
    native = getattr(app.backend, "supports_native_join", False)  # a Redis result backend
    queue = generation_queue(model)
    removed = 0
    groups: set[str] = set()
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        client = channel.client
        for key in priority_lists(queue):
            for raw in client.lrange(key, 0, -1):
                ids, group = carried(raw)
                if ids and set(ids) <= gone and client.lrem(key, 1, raw):
                    removed += 1
                    if group:
                        groups.add(group)
    backend = app.backend
    for group in (
        groups if native else ()
    ):  # the chord's own keys (its size, parts, counter): it will never complete
        backend.client.delete(
            *(backend.get_key_for_group(group, end) for end in ("", ".s", ".j", ".t", ".c"))
        )
    return removed


def carried(raw: bytes) -> tuple[list[int] | None, str | None]:
    """The trajectory ids a generation message carries, in its order (None: not one of ours), and its
    chord's group. Also read by the reconciler for the head of a queue."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        headers = envelope.get("headers", {})
        task, group = headers.get("task"), headers.get("group")
    except (ValueError, KeyError, TypeError, IndexError):
        return None, None
    if task == "pacore.generate_batch" or (task is None and isinstance(args[0], list)):
        return [int(t) for t, _ in args[0]], group
    if task in ("pacore.generate", None):
        return [int(args[0])], group
    return None, None
