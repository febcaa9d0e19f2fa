"""The round-start policy under a budget: every branch, and properties over random inputs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacore.core.policy import plan_round

HIGH = [32, 4, 1]


@pytest.mark.parametrize(
    ("schedule", "index", "room", "estimate", "max_tokens", "gathered", "expected"),
    [
        # unlimited: always the full schedule
        (HIGH, 1, None, 8192, None, 0, ("start", 32, False, None, "K=32")),
        # the paper's high preset under a 2M budget starts at full K (estimate: one 8k block)
        (HIGH, 1, 2_000_000, 8192, 131_072, 0, ("start", 32, False, 131_072, "fits")),
        # not enough for 32: K shrinks, keeping room for the final round
        (HIGH, 1, 100_000, 8192, None, 0, ("start", 11, False, None, "K shrunk from 32 to 11")),
        # round 2 cannot afford even 2 trajectories: straight to the final round with what round 1 gave
        (
            HIGH,
            2,
            20_000,
            8192,
            None,
            5,
            ("start", 1, True, 20_000, "skipped to the final round with 5 messages"),
        ),
        # round 1, nothing gathered, room for one short trajectory: a final round with a smaller max_tokens
        (HIGH, 1, 10_000, 8192, 131_072, 0, ("start", 1, True, 10_000, "max_tokens shrunk to 10,000")),
        # the final round itself, with less than its estimate left
        ([4, 1], 2, 3_000, 8192, None, 4, ("start", 1, True, 3_000, "max_tokens shrunk to 3,000")),
        ([4, 1], 2, 9_000, 8192, 4096, 4, ("start", 1, True, 4096, "K=1 fits")),
        # the final round fits by its estimate, but its own max_tokens would pass the room: lowered to it
        ([4, 1], 2, 9_000, 2_000, 131_072, 4, ("start", 1, True, 9_000, "K=1 fits 9,000 tokens left")),
        # ... while without one, the engine's limit applies (the budget guard stops it at the room)
        ([4, 1], 2, 9_000, 2_000, None, 4, ("start", 1, True, None, "K=1 fits 9,000 tokens left")),
        # not even a final round fits
        ([4, 1], 1, 100, 8192, None, 0, ("exhausted", 0, False, None, "budget exhausted, 100 tokens left")),
        ([4, 1], 2, 0, 8192, None, 3, ("exhausted", 0, True, None, "budget exhausted, 0 tokens left")),
    ],
)
def test_plan_round(schedule, index, room, estimate, max_tokens, gathered, expected) -> None:
    plan = plan_round(schedule, index, room, estimate, max_tokens, gathered, minimum=256)
    action, k, is_final, cap, reason = expected
    assert (plan.action, plan.k, plan.is_final, plan.max_tokens) == (action, k, is_final, cap)
    assert reason in plan.reason


@given(
    schedule=st.lists(st.integers(1, 64), min_size=1, max_size=3).map(lambda k: [*k, 1]),
    data=st.data(),
    room=st.one_of(st.none(), st.integers(0, 5_000_000)),
    estimate=st.integers(1, 200_000),
    max_tokens=st.one_of(st.none(), st.integers(1, 200_000)),
    gathered=st.integers(0, 64),
)
def test_plans_never_exceed_the_room_by_their_own_estimate(
    schedule, data, room, estimate, max_tokens, gathered
) -> None:
    index = data.draw(st.integers(1, len(schedule)))
    plan = plan_round(schedule, index, room, estimate, max_tokens, gathered, minimum=256)
    assert 0 <= plan.k <= schedule[index - 1]
    if plan.action == "exhausted":
        assert room is not None and room < 256 and plan.reason
        return
    assert plan.k >= 1
    if room is not None and plan.k > 1:
        assert plan.k * estimate + estimate <= room  # the round and the final round fit
    if room is not None and plan.is_final and plan.max_tokens is not None:
        assert plan.max_tokens <= room, "a final round's max_tokens fits the room"
    if max_tokens is not None:
        assert plan.max_tokens is not None and plan.max_tokens <= max_tokens, "the campaign's cap is kept"
    if index == len(schedule):
        assert plan.is_final and plan.k == 1
