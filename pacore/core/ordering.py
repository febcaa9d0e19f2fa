"""The order in which a round's messages enter the next synthesis prompt (ARCHITECTURE.md §1 item 4)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from pacore.core.compaction import Outcome, compact


def order_messages(
    outcomes: Sequence[Outcome], seed: int, pass_truncated: bool = False
) -> list[tuple[int, str]]:
    """(trajectory index, message) pairs in synthesis order.

    As the reference pipeline: index order, stable sort by len(content), a shuffle with a fresh
    random.Random(seed), then drop those without a message. Dropping last keeps the shuffle identical
    to the reference whatever fails.
    """
    by_index = sorted(outcomes, key=lambda o: o.index)
    by_length = sorted(by_index, key=lambda o: len(o.content or ""))
    random.Random(seed).shuffle(by_length)
    ordered = [(o.index, compact(o, pass_truncated)) for o in by_length]
    return [(index, message) for index, message in ordered if message is not None]
