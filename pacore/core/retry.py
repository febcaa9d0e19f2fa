"""Which engine failures are worth another try: a pure decision; tenacity applies it at the engine edge."""

from __future__ import annotations

import re
from typing import Literal

Decision = Literal["retry", "fit", "fail"]

_MAX_LEN = re.compile(r"maximum context length is (\d+)")
_INPUT = re.compile(r"(\d+) in the messages|has (\d+) input tokens|(\d+) input tokens")


def retry_decision(kind: str, status: int | None, message: str) -> Decision:
    """`retry` transient faults (no connection, timeouts, dropped streams, 408, 429, 5xx), `fit` a
    context-length error (retried once with a max_tokens that fits), `fail` any other 4xx at once."""
    if kind != "http" or status is None:
        return "retry"
    if status in (408, 429) or status >= 500:
        return "retry"
    if status == 400 and fitting_max_tokens(message) is not None:
        return "fit"
    return "fail"


def fitting_max_tokens(message: str) -> int | None:
    """From vLLM's context-length error, the largest max_tokens that fits; None if it is not one."""
    max_len, inputs = _MAX_LEN.search(message), _INPUT.search(message)
    if not max_len or not inputs:
        return None
    prompt = int(next(g for g in inputs.groups() if g))
    room = int(max_len.group(1)) - prompt
    return room if room > 0 else None


def after_failed_attempt(failed_before: int, max_attempts: int) -> Literal["again", "fail"]:
    """An attempt's own request failed (the engine's error after the attempt's retries): another
    attempt follows (from another worker, maybe another engine), until `max_attempts` of them failed;
    then the trajectory fails with the last error."""
    return "again" if failed_before + 1 < max_attempts else "fail"
