"""Problem files: JSONL in the official PaCoRe format or the `{"id", "problem", "answer"}` shorthand.

Parsing is pure: bytes of one line in, a Problem or a LineError out. The caller streams the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 1_048_576  # one problem; a larger line is reported, never loaded into the database
MAX_DEPTH = (
    64  # objects and lists nested deeper are refused (PostgreSQL's jsonb and Python's parser have limits)
)
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, which some editors write at the start of a file
_OFFICIAL_KEYS = {"id", "messages", "ground_truth", "category"}
_SHORTHAND_KEYS = {"id", "problem", "answer", "category"}


@dataclass(frozen=True)
class Problem:
    external_id: str
    messages: list[dict[str, Any]]
    ground_truth: dict[str, Any] | None
    category: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = 0
    id_generated: bool = False  # the line had no "id": it is `req_{n}`, as the official pipeline names it


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def parse_line(raw: bytes, line: int, ordinal: int | None = None) -> Problem | LineError | None:
    """One JSONL line. Blank lines are not problems and give None. `ordinal` is the line's 0-based index
    among the file's non-blank lines (default: `line - 1`): a line without an id gets `req_{ordinal}`,
    the id the official pipeline gives it."""
    if len(raw) > MAX_LINE_BYTES:
        return LineError(
            line, f"line is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit per problem"
        )
    if line == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(line, f"not UTF-8 text (byte {exc.start}): is this a JSONL file?")
    if not text.strip():
        return None
    try:
        obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        return LineError(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        return LineError(line, f"nested deeper than {MAX_DEPTH} levels: a problem is a flat object")
    except ValueError as exc:
        return LineError(line, str(exc))
    if not isinstance(obj, dict):
        return LineError(line, f"expected a JSON object, got {type(obj).__name__}")
    try:
        _storable(obj, "", 1)
        return _problem(obj, line, line - 1 if ordinal is None else ordinal)
    except ValueError as exc:
        return LineError(line, str(exc))


def _no_constant(name: str) -> Any:
    raise ValueError(
        f"holds {name}, which is not a JSON number: write the value as a string, or leave it out"
    )


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"holds the number {text}, too large for a float: write it as a string")
    return value


def _storable(value: Any, where: str, depth: int) -> None:
    """Every string (keys too) is text PostgreSQL can store: no NUL character, no lone surrogate (half
    of a UTF-16 pair, which no UTF-8 text can hold); nothing nested deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise ValueError(
            f"nested deeper than {MAX_DEPTH} levels (at {where or 'the top'}): a problem is a flat object"
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(
                f"{where or 'a value'} holds a NUL character (\\u0000), which PostgreSQL cannot store: remove it"
            )
        if any("\ud800" <= c <= "\udfff" for c in value):
            raise ValueError(
                f"{where or 'a value'} holds a lone surrogate (half of a UTF-16 pair, \\ud800-\\udfff): "
                "the text is damaged; write the character itself"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, f"the key {key[:40]!r}" if isinstance(key, str) else where, depth)
            _storable(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _storable(item, f"{where}[{i}]", depth + 1)


def _problem(obj: dict[str, Any], line: int, ordinal: int) -> Problem:
    generated = "id" not in obj
    external_id = f"req_{ordinal}" if generated else _id(obj["id"])
    if "messages" in obj and "problem" in obj:
        raise ValueError('has both "messages" and "problem": use one format per line')
    if "messages" in obj:
        messages = _messages(obj["messages"])
        ground_truth = _ground_truth(obj.get("ground_truth"))
        known = _OFFICIAL_KEYS
    elif "problem" in obj:
        problem = obj["problem"]
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError('"problem" must be a non-empty string')
        messages = [{"role": "user", "content": problem}]
        ground_truth = None if obj.get("answer") is None else {"answer": _answer(obj["answer"], '"answer"')}
        known = _SHORTHAND_KEYS
    else:
        raise ValueError('no problem text: give "messages" (official format) or "problem" (shorthand)')
    category = obj.get("category")
    if category is not None and not isinstance(category, str):
        raise ValueError('"category" must be a string')
    extra = {k: v for k, v in obj.items() if k not in known}
    return Problem(external_id, messages, ground_truth, category, extra, line, generated)


def _id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError(
            f'"id" is {json.dumps(value)}: give a non-empty string or integer, or leave "id" out '
            "to get req_N (N: the line's 0-based index among non-blank lines)"
        )
    return str(value)


def _messages(value: Any) -> list[dict[str, Any]]:
    """The conversation exactly as submitted: any role and any key pass through to every round (the
    official pipeline deep-copies it). Only the problem itself, the last user message, is checked."""
    if not isinstance(value, list) or not value:
        raise ValueError('"messages" must be a non-empty list of {"role", "content"} objects')
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] is not an object")
    users = [i for i, m in enumerate(value) if m.get("role") == "user"]
    if not users:
        raise ValueError('"messages" has no user message: the last user message is the problem')
    content = value[users[-1]].get("content")
    if not isinstance(content, str):
        raise ValueError(
            f"messages[{users[-1]}].content, the problem (the last user message), must be a string"
        )
    if not content.strip():
        raise ValueError(f"messages[{users[-1]}].content, the problem (the last user message), is empty")
    return value


def _ground_truth(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError('"ground_truth" must be an object like {"answer": "42"}')
    if "answer" in value and value["answer"] is not None:
        return {**value, "answer": _answer(value["answer"], '"ground_truth.answer"')}
    return value


def _answer(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{where} must be a string or a number")
    return str(value)
