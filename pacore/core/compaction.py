"""Compaction C(ω): a trajectory becomes the message the next round sees (ARCHITECTURE.md §1 item 3)."""

from __future__ import annotations

from dataclasses import dataclass

THINK_END = "</think>"


@dataclass(frozen=True)
class Outcome:
    """What a finished trajectory produced, as stored in its row."""

    index: int
    status: str  # "done" or "failed" (or any other terminal status)
    content: str | None
    reasoning: str | None
    finish_reason: str | None


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split raw model text into (reasoning, conclusion) at the last `</think>`; no tag, no reasoning."""
    head, sep, tail = text.rpartition(THINK_END)
    if not sep:
        return None, text
    return head.removeprefix("<think>").strip("\n") or None, tail


def parse_output(raw: str) -> tuple[str, str]:
    """Split raw generated text (the generation prompt ends inside the think block) into (reasoning,
    content) as vLLM's qwen3 reasoning parser does: at the first `</think>`; without one, all of it is
    reasoning. Used where the server's parser is not in the path (the raw completions API, the
    in-process engine)."""
    reasoning, sep, content = raw.removeprefix("<think>").partition(THINK_END)
    return reasoning, content if sep else ""


def compact(outcome: Outcome, pass_truncated: bool = False) -> str | None:
    """The message m = C(ω), or None when the trajectory contributes nothing.

    When the server parsed the reasoning out (`reasoning` / `reasoning_content`), the content is the
    conclusion. A truncated trajectory without a conclusion contributes nothing unless the campaign opted
    in to the reference pipeline's behaviour of passing its whole text on.
    """
    if outcome.status != "done":
        return None
    content = outcome.content or ""
    has_separate_reasoning = outcome.reasoning is not None
    if has_separate_reasoning:
        conclusion = content
        truncated_without_conclusion = outcome.finish_reason == "length" and not content.strip()
    else:
        reasoning, conclusion = split_reasoning(content)
        truncated_without_conclusion = outcome.finish_reason == "length" and THINK_END not in content
    if truncated_without_conclusion:
        if not pass_truncated:
            return None
        whole = (outcome.reasoning or "") + content
        return whole.strip() or None
    conclusion = conclusion.strip()
    return conclusion or None
