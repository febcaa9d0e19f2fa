"""The order of a round's responses (ARCHITECTURE.md §1 item 4), as the official pipeline makes it:
the responses in the order they completed, stable-sorted by the length of their content, then shuffled
by a fresh `random.Random(seed)`. That list, empties included, is the round's stored `round_responses`;
the references are its non-empty members in that order."""

from __future__ import annotations

import random
from collections.abc import Sequence

from pacore.core.compaction import Outcome


def official_order(completed: Sequence[Outcome], seed: int) -> list[Outcome]:
    """`completed` in completion order (never index order: the two give different prompts)."""
    by_length = sorted(completed, key=lambda o: len(o.response_content))
    random.Random(seed).shuffle(by_length)
    return by_length
