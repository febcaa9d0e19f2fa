"""`pacore worker`: checks its engine, registers in the node registry, then consumes its model's queue."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from sqlalchemy import text

from pacore.db import Database
from pacore.settings import Settings
from scheduler.app import consume, generation_queue, make_app, runtime
from worker import heartbeat
from worker.engine import Engine, OpenAIEngine

log = logging.getLogger("pacore.worker")

ENGINE_WAIT_SECONDS = 60


class EngineUnavailable(RuntimeError):
    pass


def wait_for_engine(engine: OpenAIEngine, seconds: float = ENGINE_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not engine.health():
        if time.monotonic() > deadline:
            raise EngineUnavailable(
                f"the engine at {engine.base_url} did not answer /health within {seconds:.0f} s: "
                "is `vllm serve` running there, and is --engine-url right?"
            )
        time.sleep(1.0)


def choose_model(engine: OpenAIEngine, model: str | None) -> str:
    served = engine.served_models()
    if model is None:
        if len(served) != 1:
            raise EngineUnavailable(f"the engine serves {served}: choose one with --model")
        return served[0]
    if model not in served:
        raise EngineUnavailable(
            f"the engine at {engine.base_url} serves {served}, not {model!r}: check --model"
        )
    return model


def http_engine(
    settings: Settings, engine_url: str, model: str | None, concurrency: int
) -> tuple[Engine, str]:
    api_key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
    engine = OpenAIEngine(engine_url, api_key, settings.engine_timeout, pool=concurrency)
    wait_for_engine(engine)
    return engine, choose_model(engine, model)


def inprocess_engine(model_path: str, model: str | None, max_model_len: int | None) -> tuple[Engine, str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from worker.inprocess import InProcessEngine

    name = model or os.path.basename(os.path.normpath(model_path))
    kwargs = {"max_model_len": max_model_len} if max_model_len else {}
    return InProcessEngine(model_path, name, **kwargs), name


def run_worker(
    settings: Settings, db: Database, engine: Engine, model: str, engine_url: str, concurrency: int
) -> None:
    queue = generation_queue(model)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    app = make_app(settings, db)
    rt = runtime(app)
    rt.engine, rt.worker_id = engine, worker_id
    _register(db, worker_id, queue, model, engine_url, concurrency)
    beating = heartbeat.start(db, worker_id, settings.lease_seconds, settings.heartbeat_seconds)
    log.info("worker %s consuming %s with %d concurrent generations", worker_id, queue, concurrency)
    try:
        consume(app, queue, concurrency, "gen", settings.log_level)
    finally:
        beating.set()
        engine.close()  # an in-process engine's core process must not outlive the worker


def _register(
    db: Database, worker_id: str, queue: str, model: str, engine_url: str, concurrency: int
) -> None:
    with db.session() as session:
        session.execute(
            text(
                "INSERT INTO worker (id, hostname, pid, queue, model, engine_url, concurrency) "
                "VALUES (:id, :host, :pid, :queue, :model, :url, :concurrency)"
            ),
            {
                "id": worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queue": queue,
                "model": model,
                "url": engine_url,
                "concurrency": concurrency,
            },
        )
