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

# Priorities of generation messages (kombu's Redis transport keeps a list per priority and takes the
# lowest number first; the database broker ignores them): the work of runs already started (a round that
# follows a finished one, a re-drive, a hand-back) goes before the first rounds of the runs the tick
# starts, so that a round hop does not queue behind new runs. The control queue has none: taking a final
# round's callback after the others held back the tick that its run's end wakes, and with it new runs
# (preset low's completions/s in ops/bench/control_plane.py fell 8-22%, README "Benchmarks").
STARTED_RUNS = 0
NEW_RUNS = 9


def publish(app: Celery, items: Iterable[Publish], priority: int = STARTED_RUNS) -> int:
    """Publish each chord, then stamp its trajectories as published. Returns the trajectories sent.
    `priority`: its generation messages' (STARTED_RUNS, or NEW_RUNS for the first rounds of runs the
    tick starts)."""
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
            app.send_task(
                "pacore.generate_batch", args=(batches[0],), queue=queue, link=callback, priority=priority
            )
        else:
            header = [
                app.signature(
                    "pacore.generate_batch", args=(batch,), queue=queue, immutable=True, priority=priority
                )
                for batch in batches
            ]
            chord(header, callback).apply_async()
        sent.extend(tid for tid, _ in item.trajectories)
    if sent:
        with runtime(app).db.statement() as store:
            store.mark_published(sent)
    return len(sent)
