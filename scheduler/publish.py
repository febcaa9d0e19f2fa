"""Publishing rounds as Celery chords: group(generate_batch × ceil(K/B)) | complete_round(round_id).
Ids only: each header task carries a batch of (trajectory id, attempt) pairs (`pacore.core.batches`).

A chord of one batch (K <= B, the common case) is its one task with the callback as its link: Celery
sends a task's links when it succeeds, as a chord sends its callback when its last part succeeds, with
nothing to count. That leaves out the chord's bookkeeping in the result backend (its size set on
publish, each part counted and collected on return, its keys deleted): about a third of the
scheduler's CPU and a fifth of a worker's in `ops/bench/control_plane.py` at preset low (yappi's CPU
clock, issue #16)."""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery, chord

from pacore.core.batches import split_batches
from scheduler.app import CONTROL_QUEUE, generation_queue, runtime
from scheduler.rounds import Publish


def publish(app: Celery, items: Iterable[Publish]) -> int:
    """Publish each chord, then stamp its trajectories as published. Returns the trajectories sent."""
    size = runtime(app).settings.batch_size
    sent: list[int] = []
    for item in items:
        if not item.trajectories:
            continue
        queue = generation_queue(item.model)
        batches = split_batches(item.trajectories, size)
        callback = app.signature(
            "pacore.complete_round", args=(item.round_id,), queue=CONTROL_QUEUE, immutable=True
        )
        if len(batches) == 1:
            app.send_task("pacore.generate_batch", args=(batches[0],), queue=queue, link=callback)
        else:
            header = [
                app.signature("pacore.generate_batch", args=(batch,), queue=queue, immutable=True)
                for batch in batches
            ]
            chord(header, callback).apply_async()
        sent.extend(tid for tid, _ in item.trajectories)
    if sent:
        with runtime(app).db.statement() as store:
            store.mark_published(sent)
    return len(sent)
