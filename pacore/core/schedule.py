"""Round schedules (K per round) and token quantities as users write them."""

from __future__ import annotations

import re

PRESETS: dict[str, list[int]] = {"low": [4], "medium": [16], "high": [32, 4]}

_TOKENS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMbB]?)\s*$")
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def executed_schedule(k: list[int]) -> list[int]:
    """The rounds that actually run: the user's K followed by the final round of 1 (paper §2)."""
    return [*k, 1]


def parse_rounds(text: str) -> list[int]:
    """Parse `--rounds 32,4` into [32, 4]; every K must be a positive integer."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p.isdigit() or int(p) < 1 for p in parts):
        raise ValueError(f"--rounds {text!r}: expected positive integers separated by commas, e.g. 32,4")
    return [int(p) for p in parts]


def parse_tokens(text: str) -> int:
    """Parse a token quantity: `2000000`, `2,000,000`, `2M`, `500k`, `1.5M`."""
    match = _TOKENS.match(text.replace(",", "").replace("_", ""))
    if not match:
        raise ValueError(f"{text!r} is not a token count: write e.g. 2000000, 2M or 500k")
    value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if value < 1 or value != int(value):
        raise ValueError(f"{text!r} is not a positive whole number of tokens")
    return int(value)
