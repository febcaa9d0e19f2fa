"""Batches of a round (PACORE_BATCH_SIZE) and a worker's capacity counted in generations. Expected
values are worked by hand."""

from __future__ import annotations

import pytest
from kombu.common import QoS

from pacore.core.batches import split_batches
from worker.node import Node


@pytest.mark.parametrize(
    ("k", "size", "sizes"),
    [
        (4, 16, [4]),  # preset low: a round is one message
        (16, 16, [16]),  # preset medium
        (32, 16, [16, 16]),  # preset high's first round
        (17, 16, [9, 8]),  # near-equal, not 16 + 1
        (10, 4, [4, 3, 3]),
        (3, 1, [1, 1, 1]),
        (1, 16, [1]),
    ],
)
def test_a_round_of_k_is_ceil_k_over_b_near_equal_batches_in_order(k: int, size: int, sizes: list) -> None:
    items = [(100 + i, 1) for i in range(k)]
    batches = split_batches(items, size)
    assert [len(b) for b in batches] == sizes
    assert [pair for b in batches for pair in b] == items  # every trajectory once, in the round's order


def test_no_trajectory_no_batch_and_a_batch_holds_at_least_one() -> None:
    assert split_batches([], 16) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_batches([1, 2], 0)


def test_the_consumer_takes_messages_while_generation_slots_are_left() -> None:
    applied: list[int] = []
    qos = QoS(lambda prefetch_count: applied.append(prefetch_count), 8)
    node = Node(engine=None, worker_id="w", grace_seconds=1)  # type: ignore[arg-type]
    node.slots = 8

    def batch(*ids: int) -> None:
        node.message(+1)
        for t in ids:
            assert node.begin(t)

    node.bind(qos)
    assert qos.value == 8  # nothing held: a message per slot
    batch(1, 2, 3, 4)  # 1 message held, 4 slots left
    assert qos.value == 5
    batch(5, 6, 7, 8)  # 2 messages, no slot left: no other message
    assert qos.value == 2
    batch(9, 10, 11)  # a message taken before the consumer saw the change: past the capacity
    assert qos.value == 1  # 3 messages + 8 slots - 11 generations = 0; at least 1 (0: unlimited)
    node.message(+1)
    assert not node.begin(9)  # a duplicate message of a trajectory this process generates
    node.message(-1)
    for t in (1, 2, 3):  # generations end one by one: a slot each, while their message is unacked
        node.end(t)
    assert qos.value == 3 + 8 - 8
    node.end(4)
    node.message(-1)
    assert qos.value == 2 + 8 - 7
    for t in range(5, 12):
        node.end(t)
    node.message(-1)
    node.message(-1)
    assert qos.value == 8
    batch(*range(20, 36))  # one batch larger than the slots
    assert qos.value == 1
    qos.update()
    assert applied == [1]  # what the consumer's loop applies to the channel
