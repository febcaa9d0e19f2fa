"""Ordering as the reference pipeline: index order, stable sort by length, seeded shuffle, then drop."""

import random

from pacore.core.compaction import Outcome
from pacore.core.ordering import order_messages


def done(index: int, content: str) -> Outcome:
    return Outcome(index, "done", content, "r", "stop")


def reference_order(outcomes: list[Outcome], seed: int) -> list[int]:
    """The reference procedure written out longhand, to compare against."""
    items = sorted(outcomes, key=lambda o: o.index)
    items.sort(key=lambda o: len(o.content or ""))
    random.Random(seed).shuffle(items)
    return [o.index for o in items if o.status == "done" and (o.content or "").strip()]


def test_matches_the_reference_procedure_for_many_seeds() -> None:
    outcomes = [done(i, "x" * (i % 3 + 1)) for i in range(10)]
    for seed in range(50):
        assert [i for i, _ in order_messages(outcomes, seed)] == reference_order(outcomes, seed)


def test_fixed_seed_gives_a_fixed_order_whatever_the_input_order() -> None:
    outcomes = [done(0, "bb"), done(1, "a"), done(2, "ccc"), done(3, "dd")]
    first = order_messages(outcomes, 42)
    assert order_messages(list(reversed(outcomes)), 42) == first
    # Sorted by length first: [1(a), 0(bb), 3(dd), 2(ccc)]; then shuffled with Random(42).
    expected = [1, 0, 3, 2]
    random.Random(42).shuffle(expected)
    assert [i for i, _ in first] == expected


def test_equal_length_ties_keep_index_order_before_the_shuffle() -> None:
    outcomes = [done(i, "same") for i in (3, 1, 2, 0)]
    expected = [0, 1, 2, 3]
    random.Random(7).shuffle(expected)
    assert [i for i, _ in order_messages(outcomes, 7)] == expected


def test_failed_and_empty_are_dropped_after_the_shuffle() -> None:
    outcomes = [done(0, "a"), Outcome(1, "failed", None, None, None), done(2, "   "), done(3, "bbb")]
    expected = [0, 1, 2, 3]
    ordered = sorted(outcomes, key=lambda o: len(o.content or ""))
    random.Random(5).shuffle(ordered)
    expected = [o.index for o in ordered if o.index in (0, 3)]
    assert [i for i, _ in order_messages(outcomes, 5)] == expected
    assert dict(order_messages(outcomes, 5)) == {0: "a", 3: "bbb"}


def test_different_seeds_give_different_orders() -> None:
    outcomes = [done(i, str(i)) for i in range(8)]
    assert len({tuple(i for i, _ in order_messages(outcomes, s)) for s in range(20)}) > 1
