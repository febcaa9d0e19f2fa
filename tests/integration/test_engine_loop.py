"""The HTTP engine's one event loop per process (issue #14 item 2), against FakeEngine over real HTTP:
many threads' generations stream on it at once, the guard never runs on it, and the watchdog's cut
reaches a stream that sends nothing, only while it waits on the engine."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fake_engine import FakeEngine
from worker.engine import EngineError, GenerationRequest, OpenAIEngine


def wait_until(condition, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def request(fake: FakeEngine, text: str) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": text}], fake.model)


@pytest.fixture
def engine(fake_engine: FakeEngine):
    engine = OpenAIEngine(fake_engine.url, pool=16, stream_interval=2)
    yield engine
    engine.close()


def test_many_threads_generations_stream_on_one_loop_and_their_guards_off_it(
    fake_engine: FakeEngine, engine: OpenAIEngine
) -> None:
    guard_threads: set[str] = set()
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def generate(k: int) -> tuple[int, int]:
        def guard(raw: str, streamed: int, ids: list[int] | None) -> bool:
            with lock:
                guard_threads.add(threading.current_thread().name)
                seen[f"{k}"] = streamed
            return True

        result = engine.generate(request(fake_engine, f"problem {k} LONG40 PACE2"), guard)
        return result.completion_tokens, len(result.token_ids or ())

    before = fake_engine.generated  # the engine serves the whole session
    with ThreadPoolExecutor(12) as pool:
        counts = list(pool.map(generate, range(12)))

    # 40 reasoning words, 4 of content, the end of sequence: as the fake engine counts them
    assert counts == [(45, 45)] * 12
    assert fake_engine.generated - before == 12 * 45
    assert len(seen) == 12
    loops = [t.name for t in threading.enumerate() if t.name == "engine-loop"]
    assert loops == ["engine-loop"]
    assert guard_threads and all(name.startswith("engine-loop-guard") for name in guard_threads)


def test_the_watchdogs_cut_ends_a_stream_that_sends_nothing(
    fake_engine: FakeEngine, engine: OpenAIEngine
) -> None:
    assert engine.cut(threading.get_ident()) is False  # this thread waits on no stream
    outcome: dict[str, BaseException] = {}
    ident: list[int] = []

    def stalled() -> None:
        ident.append(threading.get_ident())
        try:
            engine.generate(request(fake_engine, "STALL: no headers, nothing"))
        except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
            outcome["raised"] = exc

    thread = threading.Thread(target=stalled)
    thread.start()
    wait_until(lambda: fake_engine.streaming == 1, "the stalled request to reach the engine")
    assert engine.cut(ident[0]) is True
    thread.join(10)
    assert not thread.is_alive()
    raised = outcome["raised"]
    assert isinstance(raised, EngineError) and raised.kind == "connection", raised
    wait_until(lambda: fake_engine.streaming == 0, "the engine to see the client go")
    # the loop serves the next generation as before
    assert engine.generate(request(fake_engine, "after the cut")).finish_reason == "stop"


def test_a_stream_is_never_cut_while_its_guard_runs(fake_engine: FakeEngine, engine: OpenAIEngine) -> None:
    in_guard, release = threading.Event(), threading.Event()

    def guard(raw: str, streamed: int, ids: list[int] | None) -> bool:
        if streamed:
            in_guard.set()
            release.wait(10)
        return True

    ident: list[int] = []
    results = []

    def run() -> None:
        ident.append(threading.get_ident())
        results.append(engine.generate(request(fake_engine, "guarded LONG6"), guard))

    thread = threading.Thread(target=run)
    thread.start()
    assert in_guard.wait(10)
    assert engine.cut(ident[0]) is False  # the guard's thread would go on alone: not cut now
    release.set()
    thread.join(10)
    assert results and results[0].finish_reason == "stop" and results[0].completion_tokens == 11


def test_a_guard_that_will_not_wait_runs_on_the_loop_and_one_that_may_on_a_guard_thread(
    fake_engine: FakeEngine, engine: OpenAIEngine
) -> None:
    """A worker's guard waits on the database only to reserve a block: between blocks the loop calls it
    itself (no thread hop per chunk)."""
    where: list[tuple[int, str]] = []

    def guard(raw: str, streamed: int, ids: list[int] | None) -> bool:
        where.append((streamed, threading.current_thread().name))
        return True

    result = engine.generate(request(fake_engine, "LONG20 blocks"), guard, lambda streamed: streamed >= 10)
    assert result.completion_tokens == 25
    assert where and [s for s, _ in where] == sorted(s for s, _ in where)
    for streamed, thread in where:
        assert (thread == "engine-loop") == (streamed < 10), where
        assert thread == "engine-loop" or thread.startswith("engine-loop-guard"), where
    assert {t == "engine-loop" for _, t in where} == {True, False}


def test_a_finished_stream_gives_its_connection_back_for_the_next_request(
    fake_engine: FakeEngine, engine: OpenAIEngine
) -> None:
    """A response closed before the end of its chunked body closes its connection: every request would
    pay a new TCP connection, and the engine's server a new one (measured: a third of a worker's event
    loop went to connecting against an engine that answers at once)."""
    first = len(fake_engine.peers)
    for i in range(5):  # one after another: one connection serves them all
        assert engine.generate(request(fake_engine, f"reuse {i}")).content
    assert len(set(fake_engine.peers[first:])) == 1, fake_engine.peers[first:]
