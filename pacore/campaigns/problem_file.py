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
    """Every problem and every invalid line of `path`, in file order. Blank lines are skipped and not
    counted in the `req_{n}` ids of lines without one."""
    seen: dict[str, Problem] = {}
    ordinal = 0  # index among non-blank lines
    for number, raw in _lines(path):
        if isinstance(raw, int):
            ordinal += 1
            yield LineError(
                number, f"line is {raw:,} bytes, over the {MAX_LINE_BYTES:,}-byte limit per problem"
            )
            continue
        item = parse_line(raw, number, ordinal)
        if item is None:
            continue
        ordinal += 1
        if isinstance(item, Problem):
            first = seen.setdefault(item.external_id, item)
            if first is not item:
                item = LineError(number, _duplicate(item, first))
        yield item


def _duplicate(item: Problem, first: Problem) -> str:
    if item.id_generated:
        return (
            f'no "id": its generated id {item.external_id!r} is already the id of line {first.line}; '
            f'give line {item.line} an "id" or rename the one on line {first.line}'
        )
    if first.id_generated:
        return (
            f'id {item.external_id!r} is the id generated for line {first.line}, which has no "id"; '
            f'choose another id or give line {first.line} an "id"'
        )
    return f"duplicate id {item.external_id!r} (first on line {first.line})"
