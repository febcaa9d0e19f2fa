"""`pacore worker`: checks its engine, registers in the node registry, then consumes its model's queue
while its engine is healthy.

Two ways a worker stops generating without failing anything (ARCHITECTURE.md §3, §6):
- SIGTERM (a spot reclaim, a scale-down): Celery stops consuming and waits for the running tasks; the
  process-wide drain flag makes each generation checkpoint and hand its trajectory back between two
  chunks, unless it will finish within the grace period (PACORE_DRAIN_GRACE_SECONDS). The process exits
  0 within the grace.
- The engine stops answering /health (or stops serving the model): the worker stops consuming, hands
  back what it holds (checkpointed), and starts consuming again when the engine is back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import httpx
from celery import Celery, bootsteps
from celery.signals import worker_shutting_down

from pacore import metrics
from pacore.core.urls import redact
from pacore.settings import Settings
from pacore.store.database import Database
from scheduler.app import consume, generation_queue, make_app
from worker import heartbeat, tasks
from worker.engine import Engine, OpenAIEngine
from worker.node import Node
from worker.writes import GroupCommit

log = logging.getLogger("pacore.worker")

ENGINE_WAIT_SECONDS = 60
ENGINE_SAY_SECONDS = 5  # while it waits for its engine, a worker says so this often


class EngineUnavailable(RuntimeError):
    pass


def wait_for_engine(engine: OpenAIEngine, seconds: float = ENGINE_WAIT_SECONDS) -> None:
    """Wait for the engine's /health, saying within a few seconds why it does not answer and how long
    this goes on (a worker may start before its engine has loaded the model)."""
    started = time.monotonic()
    said = started
    while not engine.health():
        now = time.monotonic()
        left = seconds - (now - started)
        if left <= 0:
            raise EngineUnavailable(
                f"the engine at {engine.shown_url} did not answer /health within {seconds:.0f} s "
                f"({engine.health_error}): is `vllm serve` running there, and is --engine-url right?"
            )
        if now - said >= ENGINE_SAY_SECONDS or said == started:
            log.warning(
                "the engine at %s does not answer /health (%s): trying again for %.0f s more",
                engine.shown_url,
                engine.health_error,
                left,
            )
            said = now
        time.sleep(1.0)


def choose_model(engine: OpenAIEngine, model: str | None) -> str:
    try:
        served = engine.served_models()
    except (httpx.HTTPError, ValueError) as exc:  # no /v1/models, or not JSON: not an OpenAI-style server
        raise EngineUnavailable(
            f"the engine at {engine.shown_url} answers /health but could not list its models on /v1/models "
            f"({type(exc).__name__}): is it an OpenAI-compatible server such as `vllm serve`?"
        ) from None
    if model is None:
        if len(served) != 1:
            raise EngineUnavailable(f"the engine serves {served}: choose one with --model")
        return served[0]
    if model not in served:
        raise EngineUnavailable(
            f"the engine at {engine.shown_url} serves {served}, not {model!r}: check --model"
        )
    return model


def http_engine(
    settings: Settings, engine_url: str, model: str | None, concurrency: int
) -> tuple[Engine, str]:
    api_key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
    engine = OpenAIEngine(
        engine_url,
        api_key,
        settings.engine_timeout,
        # a connection per generation, and for a batch that arrives with one slot left (the health
        # gate's /health has a client of its own: with every generation waiting on a first token, a
        # health check must not wait for a pooled connection)
        pool=concurrency + settings.batch_size,
        first_token_timeout=settings.first_token_timeout,
        idle_timeout=settings.idle_timeout,
        stream_interval=settings.stream_interval,
    )
    wait_for_engine(engine)
    return engine, choose_model(engine, model)


def inprocess_engine(
    model_path: str, model: str | None, max_model_len: int | None, stream_interval: int
) -> tuple[Engine, str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from worker.inprocess import InProcessEngine

    name = model or os.path.basename(os.path.normpath(model_path))
    kwargs = {"max_model_len": max_model_len} if max_model_len else {}
    return InProcessEngine(model_path, name, stream_interval, **kwargs), name


def run_worker(
    settings: Settings,
    db: Database,
    engine: Engine,
    model: str,
    engine_url: str,
    concurrency: int,
    revision: str | None = None,
) -> None:
    queue = generation_queue(model)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    app = make_app(settings, db)
    node = Node(engine, worker_id, settings.drain_grace_seconds)
    node.slots, node.batch_size = concurrency, settings.batch_size
    node.writes = GroupCommit(db)
    context_length = getattr(engine, "context_length", None)
    node.max_model_len = context_length(model) if context_length else None
    tasks.register(app, node)
    _register(db, worker_id, queue, model, revision, redact(engine_url), concurrency)
    metrics.serve(settings.metrics_port, settings.metrics_address)
    beating = heartbeat.start(db, node, settings.lease_seconds, settings.heartbeat_seconds)
    watching = node.start_watchdog()
    worker_shutting_down.connect(lambda **_: node.drain(), weak=False)
    _gate_on_engine_health(app, db, node, model, queue, settings.engine_health_seconds)
    _count_generations(app, node)
    log.info("worker %s consuming %s with %d concurrent generations", worker_id, queue, concurrency)
    try:
        consume(app, queue, concurrency, "gen", settings.log_level)
    finally:
        beating.set()
        watching.set()
        with db.store() as store:
            store.mark_worker_down(worker_id)
        engine.close()  # an in-process engine's core process must not outlive the worker


def engine_serves(engine: Engine, model: str) -> bool:
    """The engine answers /health and serves the model this worker's queue names."""
    if not engine.health():
        return False
    served = getattr(engine, "served_models", None)
    try:
        return served is None or model in served()
    except Exception:
        return False


def _gate_on_engine_health(
    app: Celery, db: Database, node: Node, model: str, queue: str, every: float
) -> None:
    """A consumer step: poll the engine; when it goes, stop consuming and make the running generations
    hand back; when it comes back, consume again. The worker's registry row says which (`pacore status`
    shows engines that are down)."""

    def registered(up: bool) -> None:
        try:
            with db.store() as store:
                store.set_worker_engine(node.worker_id, up)
        except Exception:  # the database may be restarting: the gate's own work comes first
            log.exception("could not record the engine's state in the worker registry")

    class EngineGate(bootsteps.StartStopStep):
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.stop_event = threading.Event()

        def start(self, consumer: Any) -> None:
            threading.Thread(target=self.watch, args=(consumer,), name="engine-gate", daemon=True).start()

        def stop(self, consumer: Any) -> None:
            self.stop_event.set()

        def watch(self, consumer: Any) -> None:
            while not self.stop_event.wait(every):
                healthy = engine_serves(node.engine, model)
                if not healthy and not node.engine_lost.is_set():
                    why = getattr(node.engine, "health_error", None) or "it does not serve the model"
                    log.error("the engine stopped answering (%s): handing back, not consuming %s", why, queue)
                    node.engine_lost.set()
                    consumer.call_soon(consumer.cancel_task_queue, queue)
                    registered(False)
                elif healthy and node.engine_lost.is_set():
                    log.warning("the engine is back: consuming %s again", queue)
                    node.engine_lost.clear()
                    consumer.call_soon(consumer.add_task_queue, queue)
                    registered(True)

    app.steps["consumer"].add(EngineGate)


def _nothing() -> None:
    pass


def _count_generations(app: Celery, node: Node) -> None:
    """A consumer step: hand the node the consumer's prefetch control, so that the messages it takes
    are counted in generations (a message brings a batch of them), not in Celery threads."""

    class GenerationCapacity(bootsteps.StartStopStep):
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def start(self, consumer: Any) -> None:
            node.bind(consumer.qos, lambda: consumer.call_soon(_nothing))

        def stop(self, consumer: Any) -> None:
            node.bind(None)

    app.steps["consumer"].add(GenerationCapacity)


def _register(
    db: Database,
    worker_id: str,
    queue: str,
    model: str,
    revision: str | None,
    engine_url: str,
    concurrency: int,
) -> None:
    with db.store() as store:
        store.register_worker(
            worker_id, socket.gethostname(), os.getpid(), queue, model, revision, engine_url, concurrency
        )
