"""`pacore run`: one machine, same schema, tasks and code as a fleet.

Submit-or-resume the campaign, sweep what a dead earlier process left running (every running row is
orphaned at start-up here), start the scheduler and workers as child processes, follow progress until
the campaign is done, and summarise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pacore.campaigns.status import summaries
from pacore.core.campaign import CampaignConfig
from pacore.core.problems import LineError
from pacore.core.vocabulary import CampaignStatus, RunStatus
from pacore.settings import Settings
from pacore.store.database import Database

POLL_SECONDS = 1.0


class RunError(Exception):
    def __init__(self, message: str, errors: list[LineError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def submit_or_resume(
    db: Database, file: Path, name: str, config: CampaignConfig, skip_invalid: bool
) -> tuple[int, bool]:
    from pacore.campaigns.submit import SubmitError, submit

    with db.store() as store:
        existing = store.campaign_by_name(name)
    if existing is not None:
        return existing.id, True
    try:
        return submit(db, file, name, config, skip_invalid).campaign_id, False
    except SubmitError as exc:
        raise RunError(str(exc), exc.errors) from exc


def run_campaign(
    settings: Settings,
    db: Database,
    file: Path,
    name: str,
    config: CampaignConfig,
    skip_invalid: bool,
    engine_url: str,
    workers: int,
    concurrency: int,
) -> dict[str, Any]:
    from scheduler.app import make_app, prepare_database_broker
    from scheduler.sweep import sweep

    campaign_id, resumed = submit_or_resume(db, file, name, config, skip_invalid)
    with db.store() as store:
        row = store.campaign_by_id(campaign_id)
    assert row is not None
    stored = CampaignConfig.model_validate(row.config)
    if resumed and stored != config:
        changed = sorted(k for k, v in config.model_dump().items() if stored.model_dump()[k] != v)
        print(
            f"note: campaign {name!r} exists; resuming it with its stored settings ({', '.join(changed)} differ "
            "from this command's). Use another --name for a new campaign.",
            file=sys.stderr,
        )
    app = make_app(settings, db)
    prepare_database_broker(app, [stored.model])  # before the sweep publishes and the workers consume
    swept = sweep(app, campaign_id, orphan_all_running=True)
    print(
        f"{'resuming' if resumed else 'submitted'} campaign {name!r} (id {campaign_id}); swept {swept or 'nothing'}",
        file=sys.stderr,
    )
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    children = _start_children(db, engine_url, stored.model, workers, concurrency, log_dir, name)
    try:
        _follow(db, name, children, log_dir)
    finally:
        _stop(children, grace=settings.drain_grace_seconds + 5)  # workers drain: checkpoint, hand back
    with db.store() as store:
        summary = summaries(store, name)[0]
    return {**summary, "answers": _answers(db, campaign_id), "logs": str(log_dir)}


def _start_children(
    db: Database, engine_url: str, model: str, workers: int, concurrency: int, log_dir: Path, name: str
) -> list[subprocess.Popen[bytes]]:
    # The children find the database as this process did (a PACORE_DATABASE_URL_FILE they read too, or the
    # URL, which may be the embedded server's), and the engine in their environment: URLs may hold
    # passwords, which a command line shows to every user of the machine (`ps`).
    env = {**os.environ, "PACORE_ENGINE_URL": engine_url}
    if not os.environ.get("PACORE_DATABASE_URL_FILE"):
        env["PACORE_DATABASE_URL"] = db.url
    cmd = [sys.executable, "-m", "pacore.cli"]
    specs = [("scheduler", [*cmd, "scheduler"])] + [
        (f"worker-{i}", [*cmd, "worker", "--model", model, "--concurrency", str(concurrency)])
        for i in range(workers)
    ]
    children = []
    for label, argv in specs:
        log = (log_dir / f"{name}-{label}.log").open("ab")
        children.append(
            subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        )
    return children


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when `pacore run` dies, however it dies, so no orphaned worker
    keeps consuming; the next `pacore run` sweeps what they held."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _follow(db: Database, name: str, children: list[subprocess.Popen[bytes]], log_dir: Path) -> None:
    from pacore.cli.display import Progress

    with Progress() as progress:
        while True:
            with db.store() as store:
                summary = summaries(store, name)[0]
            progress.update(summary)
            runs = summary["runs"]
            unfinished = runs.get(RunStatus.PENDING, 0) + runs.get(RunStatus.RUNNING, 0)
            if summary["status"] != CampaignStatus.ACTIVE or unfinished == 0:
                return
            dead = [c for c in children if c.poll() is not None]
            if dead:
                raise RunError(
                    f"a pacore process exited with code {dead[0].returncode} ({' '.join(map(str, dead[0].args[3:5]))}); "
                    f"see its log in {log_dir}; run the same command again to resume"
                )
            time.sleep(POLL_SECONDS)


def _stop(children: list[subprocess.Popen[bytes]], grace: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _answers(db: Database, campaign_id: int) -> list[dict[str, Any]]:
    with db.store() as store:
        rows = store.run_answers(campaign_id)
    return [
        {
            "problem_id": r.problem_id,
            "run": r.sample,
            "status": r.status,
            "answer": r.answer,
            "ground_truth": r.truth,
            "tokens": r.tokens,
        }
        for r in rows
    ]
