"""The round state machine: given a finished round, decide what happens to its run (ARCHITECTURE.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pacore.core.compaction import Outcome, reference
from pacore.core.ordering import official_order
from pacore.core.prompts import Messages, synthesis_input
from pacore.core.vocabulary import CampaignStatus, RunStatus, TrajectoryStatus


@dataclass(frozen=True)
class Decision:
    """What the callback of a finished round does. `order` lists the round's trajectory indexes in the
    official stored order (empties included); `finish_order` in the order they completed; `messages`
    the reference each trajectory gives (None: none), by index; `references` the next synthesis prompt's,
    in order. A run ends here when `run_status` is set."""

    kind: Literal["next_round", "finish", "no_conclusion", "fail"]
    order: list[int]
    finish_order: list[int]
    reason: str
    references: list[str] = field(default_factory=list)
    messages: dict[int, str | None] = field(default_factory=dict)
    next_k: int | None = None
    next_messages: Messages | None = None
    answer: str | None = None

    @property
    def run_status(self) -> RunStatus | None:
        statuses = {
            "finish": RunStatus.DONE,
            "no_conclusion": RunStatus.NO_CONCLUSION,
            "fail": RunStatus.FAILED,
        }
        return statuses.get(self.kind)


def after_round(
    next_k: int | None,
    round_index: int,
    original: Messages,
    completed: Sequence[Outcome],
    seed: int,
    pass_truncated: bool = False,
    pool: bool = False,
) -> Decision:
    """`completed` holds the round's outcomes in completion order; `next_k` is the next round's K in the
    schedule, or None when this round was the final one. As in the official pipeline, a round with no
    reference goes on: the next synthesis prompt quotes none. A `pool` round (a round-1 pool's own
    round) is all its run does: the runs that sample it advance on their own."""
    shuffled = official_order(completed, seed)
    order = [o.index for o in shuffled]
    finish_order = [o.index for o in completed]
    messages = {o.index: reference(o, pass_truncated) for o in completed}
    refs = [m for m in (messages[o.index] for o in shuffled) if m is not None]
    if pool:
        done = sum(o.status == TrajectoryStatus.DONE for o in completed)
        reason = f"round-1 pool: {done} of {len(completed)} trajectories done"
        return Decision("finish", order, finish_order, reason, refs, messages)
    if next_k is None:
        final = shuffled[0]
        if final.status != TrajectoryStatus.DONE:
            return Decision("fail", order, finish_order, "the final round's trajectory failed", [], messages)
        answer = messages[final.index]
        if answer is None:  # nothing after its reasoning (cut at max_tokens, or empty): wrong, not done
            reason = "the final round gave no conclusion"
            return Decision("no_conclusion", order, finish_order, reason, refs, messages)
        return Decision("finish", order, finish_order, "final round done", refs, messages, answer=answer)
    return Decision(
        "next_round",
        order,
        finish_order,
        f"round {round_index}: {len(refs)} of {len(completed)} trajectories gave a reference",
        refs,
        messages,
        next_k=next_k,
        next_messages=synthesis_input(original, refs),
    )


def campaign_after_runs(status: str, unfinished: int) -> CampaignStatus | None:
    """The campaign's end, decided after one of its runs ended (or it was resumed): an active campaign
    with no run pending or running is done; a paused one stays paused until it is resumed (and decided
    again then); a cancelled or done one is left alone. None: nothing changes. `unfinished` must be read
    under the campaign row's lock, or two runs ending at once would each still see the other."""
    if status == CampaignStatus.ACTIVE and unfinished == 0:
        return CampaignStatus.DONE
    return None
