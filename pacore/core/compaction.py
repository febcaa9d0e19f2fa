"""Compaction C(ω): what a trajectory passes on to the next round (ARCHITECTURE.md §1 item 3).

The official pipeline (stepfun-ai/PaCoRe, `Exp.parse_answer`) keeps the text after the last `</think>`
of the response's `content`, else the whole `content`, and strips nothing: PaCoRe-8B was trained on
exactly these bytes, leading `\\n\\n` included. A response is a reference iff its raw content is not
empty; a failed call stores `""` and so is not one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacore.core.vocabulary import TrajectoryStatus

THINK_END = "</think>"


@dataclass(frozen=True)
class Outcome:
    """What a finished trajectory produced, as stored in its row."""

    index: int
    status: str  # a TrajectoryStatus: done, failed (or another terminal status)
    content: str | None
    reasoning: str | None
    finish_reason: str | None

    @property
    def response_content(self) -> str:
        """The official response's `content`: the server's content, `""` for a failed call. A null
        content (a reply cut inside its reasoning; the official code crashes on it) counts as `""`."""
        return (self.content or "") if self.status == TrajectoryStatus.DONE else ""

    @property
    def response_reasoning(self) -> str:
        """The official response's `reasoning_content`: `""` when the server sent none, never null."""
        return (self.reasoning or "") if self.status == TrajectoryStatus.DONE else ""


def parse_answer(content: str) -> str:
    """The official `parse_answer`: everything after the last `</think>`, else all of it; no strip."""
    return content.rpartition(THINK_END)[2]


def reference(outcome: Outcome, pass_truncated: bool = False) -> str | None:
    """The reference a trajectory gives the next synthesis prompt, or None when it gives none.

    `pass_truncated` (a documented deviation, off by default) passes on the reasoning, unstripped, of a
    trajectory whose content is empty: a reply cut inside its reasoning would otherwise contribute
    nothing.
    """
    content = outcome.response_content
    if content:
        return parse_answer(content)
    if pass_truncated and outcome.response_reasoning:
        return outcome.response_reasoning
    return None


def parse_output(raw: str) -> tuple[str, str]:
    """Split raw generated text (the generation prompt ends inside the think block) into (reasoning,
    content) as vLLM's qwen3 reasoning parser does: at the first `</think>`; without one, all of it is
    reasoning. Used where the server's parser is not in the path (the raw completions API, the
    in-process engine)."""
    reasoning, sep, content = raw.removeprefix("<think>").partition(THINK_END)
    return reasoning, content if sep else ""


def reference_kind(outcome: Outcome, pass_truncated: bool = False) -> str:
    """How `reference` made the trajectory's reference: `conclusion` (from its content), `reasoning`
    (its reasoning, under pass_truncated), or `none` (it gave none)."""
    if outcome.response_content:
        return "conclusion"
    return "reasoning" if reference(outcome, pass_truncated) is not None else "none"
