"""The round state machine: given a finished round, decide what happens to its run (ARCHITECTURE.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pacore.core.compaction import Outcome, compact
from pacore.core.ordering import order_messages
from pacore.core.prompts import Messages, round_input


@dataclass(frozen=True)
class Decision:
    """What the callback of a finished round does. `order` lists the trajectory indices whose messages
    the next synthesis prompt uses, in the order it uses them."""

    kind: Literal["next_round", "finish", "fail"]
    order: list[int]
    reason: str
    next_k: int | None = None
    next_messages: Messages | None = None
    answer: str | None = None


def after_round(
    next_k: int | None,
    round_index: int,
    original: Messages,
    outcomes: Sequence[Outcome],
    seed: int,
    pass_truncated: bool = False,
) -> Decision:
    """`next_k` is the next round's K in the schedule, or None when this round was the final one."""
    ordered = order_messages(outcomes, seed, pass_truncated)
    order = [index for index, _ in ordered]
    if not any(o.status == "done" for o in outcomes):
        return Decision("fail", order, f"every trajectory of round {round_index} failed")
    if next_k is None:
        final = min(outcomes, key=lambda o: o.index)
        answer = compact(final, pass_truncated)
        reason = "final round done" if answer else "final round done without a conclusion"
        return Decision("finish", order, reason, answer=answer)
    refs = [message for _, message in ordered]
    return Decision(
        "next_round",
        order,
        f"round {round_index}: {len(refs)} of {len(outcomes)} trajectories gave a message",
        next_k=next_k,
        next_messages=round_input(original, refs),
    )
