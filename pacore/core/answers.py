"""Extracting a final answer from a conclusion: the last \\boxed{...} (nested braces) or \\fbox{...}."""

from __future__ import annotations

import re

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str | None) -> str | None:
    """The content of the last \\boxed{} or \\fbox{} in `text`, braces balanced; None when there is none."""
    if not text:
        return None
    starts = [m.end() for m in _BOX.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


# A closing sentence naming the answer, for responses without a box: "The final answer is 42." or
# "the answer is: $x = 3$". Only the last line is searched, so a sentence mid-reasoning is not taken.
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*\$*(.+?)\$*\s*\.?\s*$", re.IGNORECASE)


def final_answer(text: str | None) -> tuple[str | None, str]:
    """The final answer of a response and where it was found: `boxed` (the last \\boxed{} or \\fbox{}),
    `answer-is` (a last line "... answer is X"), or `none`."""
    boxed = extract_boxed(text)
    if boxed:
        return boxed, "boxed"
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if lines and (match := _ANSWER_IS.search(lines[-1])) and match.group(1).strip():
        return match.group(1).strip(), "answer-is"
    return None, "none"
