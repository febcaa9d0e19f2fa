"""What a round does when the budget left may not cover it (ARCHITECTURE.md §4): a pure decision,
stored with its reason and shown by `pacore status`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MIN_TRAJECTORY_TOKENS = 256  # below this a final trajectory cannot say anything useful


@dataclass(frozen=True)
class RoundPlan:
    action: Literal["start", "exhausted"]
    k: int
    is_final: bool
    max_tokens: int | None
    reason: str


def plan_round(
    schedule: list[int],
    round_index: int,
    room: int | None,
    estimate: int,
    max_tokens: int | None,
    gathered: int,
    minimum: int = MIN_TRAJECTORY_TOKENS,
) -> RoundPlan:
    """Plan round `round_index` (1-based) of the executed `schedule` (K + [1]).

    `room` is what the run may still spend (None: unlimited), `estimate` the expected tokens of one
    trajectory, `gathered` how many messages the previous round produced. In order of preference: full
    K (keeping room for the final round); a smaller K; straight to the final round with the messages
    gathered; a final round with a smaller max_tokens; or the end of the run.
    """
    k = schedule[round_index - 1]
    is_final = round_index == len(schedule)
    if room is None:
        return RoundPlan("start", k, is_final, max_tokens, f"round {round_index}: K={k}")
    per = max(1, estimate)
    keep = 0 if is_final else per  # what the final round will need
    if room >= k * per + keep:
        # A final round's own max_tokens never exceeds the room (nothing runs after it to keep room for).
        # Without one, the engine's limit applies (the context length less the prompt: a larger value is
        # refused) and the budget guard stops the stream at the room.
        cap = min(max_tokens, room) if is_final and max_tokens is not None else max_tokens
        return RoundPlan("start", k, is_final, cap, f"round {round_index}: K={k} fits {room:,} tokens left")
    if not is_final and (fit := (room - keep) // per) >= 2:
        return RoundPlan(
            "start",
            fit,
            False,
            max_tokens,
            f"round {round_index}: K shrunk from {k} to {fit} to fit {room:,} tokens left",
        )
    if not is_final and gathered > 0 and room >= min(per, minimum):
        cap = _cap(max_tokens, room)
        return RoundPlan(
            "start",
            1,
            True,
            cap,
            f"round {round_index}: skipped to the final round with {gathered} messages; {room:,} tokens left",
        )
    if room >= minimum:
        cap = _cap(max_tokens, room)
        return RoundPlan(
            "start",
            1,
            True,
            cap,
            f"round {round_index}: final round with max_tokens shrunk to {cap:,} to fit {room:,} tokens left",
        )
    return RoundPlan(
        "exhausted",
        0,
        is_final,
        max_tokens,
        f"round {round_index}: budget exhausted, {room:,} tokens left, a final round needs {minimum:,}",
    )


def _cap(max_tokens: int | None, room: int) -> int:
    return room if max_tokens is None else min(max_tokens, room)
