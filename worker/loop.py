"""One asyncio event loop per worker process, on its own thread, for every generation of the process.

The Celery threads pool delivers trajectory ids and runs the claims and result writes on its threads;
the streams themselves all run on this loop (one HTTP connection pool, or the in-process vLLM engine).
Nothing blocking runs on the loop: the per-chunk guard, which may reserve budget in PostgreSQL, runs on
the guard threads (`guarded`), sized so that guards waiting on a database outage never hold up
the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str, guard_threads: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.guards = concurrent.futures.ThreadPoolExecutor(guard_threads, thread_name_prefix=f"{name}-guard")
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and wait for it (from any thread but the loop's own)."""
        return self.submit(coroutine).result(timeout)

    async def guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a guard thread, awaited on the loop."""
        return await self.loop.run_in_executor(self.guards, fn, *args)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.guards.shutdown(wait=False, cancel_futures=True)
