"""Queries of the fleet: worker processes joining, beating and leaving."""

from __future__ import annotations

from dataclasses import dataclass

from pacore.store.base import StoreBase

LIVE_SECONDS = 60  # a worker whose heartbeat is older is not counted live


@dataclass(frozen=True)
class ModelFleet:
    model: str
    workers: int  # live, taking work
    slots: int  # their generation slots
    engines_down: int  # live workers whose engine does not answer (they take no work)
    revisions: list[str]  # the model revisions its live workers said they serve (`pacore worker --revision`)


class FleetQueries(StoreBase):
    def register_worker(
        self,
        worker_id: str,
        host: str,
        pid: int,
        queue: str,
        model: str,
        revision: str | None,
        url: str,
        concurrency: int,
    ) -> None:
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queue": queue,
            "model": model,
            "revision": revision,
            "url": url,
            "concurrency": concurrency,
        }
        self.execute("register_worker", params)

    def set_worker_engine(self, worker_id: str, up: bool) -> None:
        self.execute("set_worker_engine", {"id": worker_id, "status": "up" if up else "engine_down"})

    def fleet_by_model(self) -> list[ModelFleet]:
        rows = self.execute("fleet_by_model", {"stale": LIVE_SECONDS})
        return [
            ModelFleet(r.model, int(r.workers), int(r.slots), int(r.engines_down), list(r.revisions))
            for r in rows
        ]

    def demand_by_model(self) -> dict[str, int]:
        """The generation slots each model's queue needs now (ARCHITECTURE.md §3; view `fleet_demand`)."""
        return {r.model: int(r.slots) for r in self.execute("demand_by_model", {})}

    def demand_of_model(self, model: str) -> int:
        return int(self.scalar("demand_of_model", {"model": model}))

    def running_by_pid(self, host: str, pids: list[int]) -> dict[int, int]:
        """Trajectories each of this host's worker processes (by pid) is generating now; a pid that has not
        registered yet is absent."""
        rows = self.execute("running_by_pid", {"host": host, "pids": pids})
        return {int(r.pid): int(r.running) for r in rows}

    def expired_leases(self, ids: list[int]) -> dict[int, tuple[int, float]]:
        """Per campaign: running trajectories whose lease ran out, and the oldest one's wait in seconds."""
        rows = self.execute("expired_leases", {"ids": ids})
        return {r.campaign_id: (int(r.trajectories), float(r.waited)) for r in rows}

    def mark_worker_down(self, worker_id: str) -> None:
        self.execute("mark_worker_down", {"id": worker_id})

    def extend_leases(self, worker: str, lease: int, holding: dict[int, int]) -> set[int]:
        """Returns the trajectories still this worker's."""
        params = {"worker": worker, "lease": lease, "ids": list(holding), "attempts": list(holding.values())}
        return set(self.scalars("extend_leases", params))

    def touch_worker(self, worker: str) -> None:
        self.execute("touch_worker", {"worker": worker})
