"""The reconciler reads the trajectory of the oldest queued message (to tell which pending rows have left
their queue): a `generate_batch` message carries pairs, an older `generate` one a single pair. Envelopes
built here as kombu's Redis transport stores them (JSON, the Celery protocol 2 body base64-encoded)."""

from __future__ import annotations

import base64
import json

from scheduler.reconciler import _oldest_queued


def envelope(args: list) -> bytes:
    body = base64.b64encode(json.dumps([args, {}, {"chord": None}]).encode()).decode()
    return json.dumps({"body": body, "properties": {"body_encoding": "base64"}, "headers": {}}).encode()


def test_the_head_of_a_queue_of_batches_and_of_single_messages() -> None:
    assert _oldest_queued(envelope([[[5, 1], [6, 2]]])) == 5  # generate_batch([[5, 1], [6, 2]])
    assert _oldest_queued(envelope([7, 1])) == 7  # generate(7, 1)
    assert _oldest_queued(None) is None
