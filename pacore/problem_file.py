"""Streaming a problem file from disk: bounded line reads, duplicate ids, line numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pacore.core.problems import MAX_LINE_BYTES, LineError, Problem, parse_line

_READ = 1 << 20


def _lines(path: Path) -> Iterator[tuple[int, bytes | int]]:
    """(line number, bytes) per line; for a line over the limit, (line number, its length) instead, so
    that a multi-GB line is measured, never held in memory."""
    with path.open("rb") as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 2)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES + 1 or (len(raw) == MAX_LINE_BYTES + 1 and not raw.endswith(b"\n")):
                size = len(raw)
                while raw and not raw.endswith(b"\n"):
                    raw = f.readline(_READ)
                    size += len(raw)
                yield number, size
            else:
                yield number, raw.rstrip(b"\r\n")


def read_problems(path: Path) -> Iterator[Problem | LineError]:
    """Every problem and every invalid line of `path`, in file order. Blank lines are skipped."""
    seen: dict[str, int] = {}
    for number, raw in _lines(path):
        if isinstance(raw, int):
            yield LineError(
                number, f"line is {raw:,} bytes, over the {MAX_LINE_BYTES:,}-byte limit per problem"
            )
            continue
        item = parse_line(raw, number)
        if isinstance(item, Problem):
            if item.external_id in seen:
                item = LineError(
                    number, f"duplicate id {item.external_id!r} (first on line {seen[item.external_id]})"
                )
            else:
                seen[item.external_id] = number
        if item is not None:
            yield item
