"""Round schedules (K per round) and token quantities as users write them."""

from __future__ import annotations

import re

PRESETS: dict[str, list[int]] = {"low": [4], "medium": [16], "high": [32, 4]}

# The largest values pacore accepts. Each fits the column that stores it with room for sums (K and
# max_tokens are int4; token counters bigint) and lies far beyond any real campaign: a value past one is
# a mistake, refused at submit with its name, never a database error later.
MAX_K = 4096  # trajectories per round
MAX_ROUNDS = 64  # rounds before the final one
MAX_SAMPLES = 4096  # runs per problem
MAX_TRAJECTORY_TOKENS = 16_777_216  # --max-tokens: above any model's context length
MAX_BUDGET_TOKENS = 10**15  # --problem-budget, --campaign-budget
MAX_POOL = 65_536  # --pool
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # --seed

_TOKENS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMbB]?)\s*$")
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def executed_schedule(k: list[int]) -> list[int]:
    """The rounds that actually run: the user's K followed by the final round of 1 (paper §2)."""
    return [*k, 1]


def parse_rounds(text: str) -> list[int]:
    """Parse `--rounds 32,4` into [32, 4]; every K a positive integer, at most MAX_K, at most MAX_ROUNDS."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p.isdigit() or int(p) < 1 for p in parts):
        raise ValueError(f"--rounds {text!r}: expected positive integers separated by commas, e.g. 32,4")
    if len(parts) > MAX_ROUNDS:
        raise ValueError(f"--rounds {text!r}: {len(parts)} rounds, more than the {MAX_ROUNDS} pacore runs")
    if (k := max(int(p) for p in parts)) > MAX_K:
        raise ValueError(
            f"--rounds {text!r}: K={k:,} is more than the {MAX_K:,} trajectories a round may have"
        )
    return [int(p) for p in parts]


def parse_tokens(text: str, maximum: int = MAX_BUDGET_TOKENS) -> int:
    """Parse a token quantity: `2000000`, `2,000,000`, `2M`, `500k`, `1.5M`; at most `maximum`."""
    match = _TOKENS.match(text.replace(",", "").replace("_", ""))
    if not match:
        raise ValueError(f"{text!r} is not a token count: write e.g. 2000000, 2M or 500k")
    value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if value < 1 or value != int(value):
        raise ValueError(f"{text!r} is not a positive whole number of tokens")
    if value > maximum:
        raise ValueError(f"{text!r} is more than {maximum:,} tokens, the most pacore accepts here")
    return int(value)
