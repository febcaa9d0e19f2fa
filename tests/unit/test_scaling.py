"""The autoscaler's formula (KEDA's: ceil(demand / per worker) within the bounds) and its cooldown (the
HPA's scale-down stabilization window). Expected values are worked by hand."""

from __future__ import annotations

import pytest

from pacore.core.scaling import Scaler, wanted_workers


@pytest.mark.parametrize(
    ("demand", "least", "most", "wanted"),
    [
        (0, 0, 8, 0),  # no demand: none (activation at 0)
        (1, 0, 8, 1),  # any demand: one
        (64, 0, 8, 1),
        (65, 0, 8, 2),
        (128, 0, 8, 2),
        (10_000, 0, 8, 8),  # never above max
        (0, 2, 8, 2),  # never below min
        (-3, 0, 8, 0),  # a negative count is none
    ],
)
def test_one_worker_per_per_worker_slots_of_demand_within_the_bounds(
    demand: int, least: int, most: int, wanted: int
) -> None:
    assert wanted_workers(demand, 64, least, most) == wanted


def test_out_at_once_in_only_after_the_cooldown() -> None:
    scaler = Scaler(per_worker=4, least=0, most=10, cooldown=30)
    assert scaler.target(12, now=0) == 3
    assert scaler.target(40, now=1) == 10  # out at once
    assert scaler.target(4, now=2) == 10  # a dip: the most wanted over the last 30 s holds
    assert scaler.target(4, now=31) == 10  # t=1 is still in the window
    assert scaler.target(4, now=31.5) == 1  # it left the window: in
    assert scaler.target(0, now=40) == 1
    assert scaler.target(0, now=62) == 0


def test_without_a_cooldown_it_follows_the_demand() -> None:
    scaler = Scaler(per_worker=4, least=0, most=10, cooldown=0)
    assert [scaler.target(d, now=t) for t, d in enumerate([8, 20, 4, 0])] == [2, 5, 1, 0]


@pytest.mark.parametrize(
    ("per_worker", "least", "most", "cooldown"), [(0, 0, 4, 1), (4, 5, 4, 1), (4, 0, 0, 1), (4, 0, 4, -1)]
)
def test_impossible_bounds_are_refused(per_worker: int, least: int, most: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="need per_worker >= 1"):
        Scaler(per_worker, least, most, cooldown)
