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
