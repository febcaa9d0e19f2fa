"""`pacore scheduler`: a Celery worker on the `control` queue with an embedded beat for the dispatch tick."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from pacore.db import Database
from pacore.settings import Settings
from scheduler.app import CONTROL_QUEUE, make_app


def run_scheduler(settings: Settings, db: Database, concurrency: int) -> None:
    app = make_app(settings, db)
    interval = settings.dispatch_interval
    app.conf.beat_schedule = {
        "dispatch": {
            "task": "pacore.dispatch",
            "schedule": interval,
            # A tick nobody ran in time is useless: the next one does the same work.
            "options": {"queue": CONTROL_QUEUE, "expires": max(5.0, 5 * interval)},
        }
    }
    schedule_file = Path(tempfile.mkdtemp(prefix="pacore-beat-")) / "schedule"
    app.worker_main(
        [
            "worker",
            "--beat",
            f"--schedule={schedule_file}",
            f"--queues={CONTROL_QUEUE}",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--hostname=scheduler-{uuid.uuid4().hex[:8]}@%h",
            f"--loglevel={settings.log_level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
