"""How many workers a model's queue wants: one formula for `pacore fleet autoscale` and the KEDA
ScaledObject in `ops/deploy/k8s` (README "Elastic fleet" shows them side by side).

- Wanted: ceil(demand / per_worker) workers, within [least, most], where demand is the view
  `fleet_demand` (the generation slots the model's queue needs now) and per_worker a worker's
  concurrency. This is the HPA's formula for KEDA's `targetQueryValue` = per_worker (AverageValue),
  with `minReplicaCount` / `maxReplicaCount` as the bounds; demand 0 is 0 workers (activation at 0).
- Out at once; in only as far as the most workers wanted over the last `cooldown` seconds (the HPA's
  scale-down stabilization window, which the ScaledObject sets to its `cooldownPeriod`): a dip of demand
  between two rounds does not stop workers that the next round needs.
"""

from __future__ import annotations

from collections import deque


def wanted_workers(demand: int, per_worker: int, least: int, most: int) -> int:
    """ceil(demand / per_worker), at least `least`, at most `most`."""
    return max(least, min(most, -(-max(0, demand) // per_worker)))


class Scaler:
    """The workers to have now, given the demand now and what was wanted within the cooldown."""

    def __init__(self, per_worker: int, least: int, most: int, cooldown: float) -> None:
        if per_worker < 1 or least < 0 or most < max(1, least) or cooldown < 0:
            raise ValueError(
                f"per_worker {per_worker}, min {least}, max {most}, cooldown {cooldown}: need per_worker >= 1, "
                "0 <= min <= max, max >= 1 and cooldown >= 0"
            )
        self.per_worker, self.least, self.most, self.cooldown = per_worker, least, most, cooldown
        self.recent: deque[tuple[float, int]] = deque()  # (when, wanted), the last `cooldown` seconds

    def target(self, demand: int, now: float) -> int:
        wanted = wanted_workers(demand, self.per_worker, self.least, self.most)
        self.recent.append((now, wanted))
        while self.recent and self.recent[0][0] < now - self.cooldown:
            self.recent.popleft()
        return max(w for _, w in self.recent)
