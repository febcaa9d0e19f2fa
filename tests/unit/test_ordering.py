"""Ordering as the official pipeline: completion order, stable sort by len(content), then a shuffle by a
fresh random.Random(seed). Expected orders are written out by hand (random.Random(42) shuffles
[0, 1, 2, 3] into [2, 1, 3, 0]; random.Random(7) shuffles [a, b, c, d] into [d, b, a, c])."""

from pacore.core.compaction import Outcome
from pacore.core.ordering import official_order


def done(index: int, content: str) -> Outcome:
    return Outcome(index, "done", content, "r", "stop")


def indexes(outcomes: list[Outcome]) -> list[int]:
    return [o.index for o in outcomes]


def test_sorted_by_length_then_shuffled() -> None:
    # completion order 0..3; by length: [1 (a), 0 (bb), 3 (dd), 2 (ccc)]; shuffled by Random(42)
    completed = [done(0, "bb"), done(1, "a"), done(2, "ccc"), done(3, "dd")]
    assert indexes(official_order(completed, 42)) == [3, 0, 2, 1]


def test_ties_keep_completion_order_not_index_order() -> None:
    completed = [done(i, "same") for i in (3, 1, 2, 0)]  # finished in this order
    assert indexes(official_order(completed, 7)) == [0, 1, 3, 2]
    by_index = sorted(completed, key=lambda o: o.index)
    assert indexes(official_order(by_index, 7)) == [3, 1, 0, 2]


def test_failed_and_empty_responses_stay_in_the_order_with_length_zero() -> None:
    completed = [done(0, "aa"), Outcome(1, "failed", None, None, None), done(2, "   "), done(3, "")]
    # by length: [1 (""), 3 (""), 0 (aa), 2 (   )]; shuffled by Random(42) -> positions [2, 1, 3, 0]
    assert indexes(official_order(completed, 42)) == [0, 3, 2, 1]


def test_different_seeds_give_different_orders() -> None:
    completed = [done(i, str(i)) for i in range(8)]
    assert len({tuple(indexes(official_order(completed, s))) for s in range(20)}) > 1
