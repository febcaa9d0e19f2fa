"""The Celery app: JSON only, late acks, prefetch 1, one generation queue per served model plus `control`.

Built from settings at process start (never at import time). It registers no task: each process
registers its own (`scheduler.tasks` on the scheduler, `worker.tasks` on GPU workers) and publishes the
others' by name, so neither imports the other. What the scheduler's tasks share (settings, the database,
admission control) hangs off `app.pacore`.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend
from kombu.transport.redis import Channel as RedisChannel

from pacore.settings import Settings
from pacore.store.database import Database
from scheduler.admission import Admission

CONTROL_QUEUE = "control"


def generation_queue(model: str) -> str:
    """One queue per served model (and revision, written `name@revision`)."""
    return "generate." + re.sub(r"[^A-Za-z0-9_.@/-]", "_", model)


def priority_lists(queue: str) -> list[str]:
    """The Redis lists of a queue, one per message priority, highest first (the order a consumer takes
    them), as kombu's Redis transport names them."""
    sep, steps = RedisChannel.sep, RedisChannel.priority_steps
    return [queue if pri == 0 else f"{queue}{sep}{pri}" for pri in steps]


@dataclass
class Runtime:
    settings: Settings
    db: Database
    admission: Admission | None = None  # on `pacore scheduler`
    # set when a run ends (its room is free): the dispatch tick runs now, not at its next interval
    wake: threading.Event = field(default_factory=threading.Event)
    # when the tick's periodic checks (stuck rounds, starved runs) are next due (time.monotonic())
    checks_due: float = 0.0


def broker_urls(settings: Settings, db_url: str) -> tuple[str, str]:
    """(broker, result backend). Without a broker setting, the database itself carries the messages
    (kombu's SQLAlchemy transport) and the results (Celery's database backend): a single box needs no
    Redis. With Redis as broker, Redis also stores results (native chord counting)."""
    broker = settings.broker_url.get_secret_value() if settings.broker_url else f"sqla+{db_url}"
    if settings.result_backend:
        backend = settings.result_backend.get_secret_value()
    elif broker.startswith(("redis://", "rediss://")):
        backend = broker
    else:
        backend = f"db+{db_url}"
    return broker, backend


def _transport_options(broker: str) -> dict[str, Any]:
    if broker.startswith(("redis://", "rediss://")):
        # Longer than the longest generation; the reconciler, not this timeout, re-drives lost work.
        return {"visibility_timeout": 6 * 3600}
    return {}  # kombu's SQLAlchemy transport hands its options to create_engine()


class RedisResults(RedisBackend):
    """Celery's Redis result backend for processes that never wait on a task's result, as pacore's
    never do (rounds advance through their chord's callback, counted in Redis).

    Celery's own subscribes to the result of every task it sends, and of every task of a group it
    publishes (a chord's header), for waiters no pacore process has. Those results are never stored,
    so nothing ends the subscriptions: one more per published round (3,000 chords published from one
    process held 3,000 subscriptions), for as long as the process lives."""

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        return result

    def on_task_call(self, producer: Any, task_id: str) -> None:
        pass


def make_app(settings: Settings, db: Database) -> Celery:
    broker, backend = broker_urls(settings, db.url)
    app = Celery("pacore", broker=broker, backend=backend, set_as_current=True)
    here = f"{__name__}:{RedisResults.__name__}"
    app.loader.override_backends = {**app.loader.override_backends, "redis": here, "rediss": here}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CONTROL_QUEUE,
        task_create_missing_queues=True,
        broker_transport_options=_transport_options(broker),
        result_expires=7 * 24 * 3600,
        result_extended=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        database_table_names={"task": "celery_taskmeta", "group": "celery_groupmeta"},
    )
    app.pacore = Runtime(settings, db)  # type: ignore[attr-defined]
    return app


def prepare_database_broker(app: Celery, models: list[str] | None = None) -> None:
    """With the database as broker and result backend, kombu and Celery create their tables and each
    queue's row on first use; processes starting together on a fresh database race to create them (a
    worker that loses dies on the duplicate key of `kombu_queue`). Create them once, here: the control
    queue and the generation queue of each of `models`."""
    if not app.conf.broker_url.startswith("sqla+"):
        return
    with app.connection_for_write() as connection:
        for queue in [CONTROL_QUEUE, *(generation_queue(m) for m in models or [])]:
            connection.default_channel.queue_declare(queue=queue)
    app.backend.get_task_meta("pacore-warm-up")  # the database backend creates its tables on first read


def consume(app: Celery, queue: str, concurrency: int, name: str, log_level: str) -> None:
    """Run a Celery worker in this process on one queue with a threads pool (blocks until shutdown)."""
    app.worker_main(
        [
            "worker",
            f"--queues={queue}",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--hostname={name}-{uuid.uuid4().hex[:8]}@%h",
            f"--loglevel={log_level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def runtime(app: Celery) -> Runtime:
    return app.pacore  # type: ignore[attr-defined,no-any-return]
