"""Hard budgets by construction (ARCHITECTURE.md §4): a request never asks the engine for more tokens than
its attempt holds reserved and has not spent. A trajectory longer than one block is generated in
segments: each a request whose `max_tokens` is what is held, continued from the exact token ids so far
when another block is granted. The engine stops itself at `max_tokens`, so no chunk size, slow reader or
frozen worker can make it generate past the budget.
"""

from __future__ import annotations

from typing import Literal

_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: spreads consecutive offsets over the seed space
_SEED_SPACE = 2**63


def segment_max_tokens(cap_left: int | None, unspent: int) -> int:
    """`max_tokens` of the next request: what the attempt holds and has not spent, never more than the
    trajectory's own cap still allows (None: no cap). 0: nothing may be asked for."""
    return max(0, unspent if cap_left is None else min(cap_left, unspent))


def segment_seed(seed: int | None, offset: int) -> int | None:
    """The sampling seed of a segment that starts `offset` tokens into the trajectory (reproducible
    sampling on when `seed` is set). The first segment keeps the seed itself, so a trajectory that fits
    one segment samples exactly as an unsegmented request would; a later one gets a seed derived from
    its offset, the same on every replay, and not the first segment's (which would repeat its draws)."""
    if seed is None or offset == 0:
        return seed
    return (seed + offset * _GOLDEN) % _SEED_SPACE


def after_segment(
    finish_reason: str | None, asked: int, cap_left: int | None, context_bound: bool
) -> Literal["continue", "done"]:
    """A segment ended. It ends the trajectory unless it stopped on `length` only because it asked for no
    more than its attempt held: not at the trajectory's cap (`cap_left`, what the cap allowed when it
    was asked), not at the model's context (`context_bound`: its request was lowered to fit)."""
    if finish_reason != "length" or context_bound:
        return "done"
    if cap_left is not None and asked >= cap_left:
        return "done"  # the trajectory's own max_tokens: a real truncation
    return "continue"
