"""Queries of the fleet: worker processes joining, beating and leaving."""

from __future__ import annotations

from pacore.store.base import StoreBase


class FleetQueries(StoreBase):
    def register_worker(
        self, worker_id: str, host: str, pid: int, queue: str, model: str, url: str, concurrency: int
    ) -> None:
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queue": queue,
            "model": model,
            "url": url,
            "concurrency": concurrency,
        }
        self.execute("register_worker", params)

    def mark_worker_down(self, worker_id: str) -> None:
        self.execute("mark_worker_down", {"id": worker_id})

    def extend_leases(self, worker: str, lease: int, holding: dict[int, int]) -> set[int]:
        """Returns the trajectories still this worker's."""
        params = {"worker": worker, "lease": lease, "ids": list(holding), "attempts": list(holding.values())}
        return set(self.scalars("extend_leases", params))

    def touch_worker(self, worker: str) -> None:
        self.execute("touch_worker", {"worker": worker})
