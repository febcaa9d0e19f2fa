"""Problem files: JSONL in the official PaCoRe format or the `{"id", "problem", "answer"}` shorthand.

Parsing is pure: bytes of one line in, a Problem or a LineError out. The caller streams the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 1_048_576  # one problem; a larger line is reported, never loaded into the database
ROLES = ("system", "user", "assistant")
_OFFICIAL_KEYS = {"id", "messages", "ground_truth", "category"}
_SHORTHAND_KEYS = {"id", "problem", "answer", "category"}


@dataclass(frozen=True)
class Problem:
    external_id: str
    messages: list[dict[str, str]]
    ground_truth: dict[str, Any] | None
    category: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def parse_line(raw: bytes, line: int) -> Problem | LineError | None:
    """One JSONL line. Blank lines are not problems and give None."""
    if len(raw) > MAX_LINE_BYTES:
        return LineError(
            line, f"line is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit per problem"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(line, f"not UTF-8 text (byte {exc.start}): is this a JSONL file?")
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineError(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        return LineError(line, f"expected a JSON object, got {type(obj).__name__}")
    try:
        return _problem(obj, line)
    except ValueError as exc:
        return LineError(line, str(exc))


def _problem(obj: dict[str, Any], line: int) -> Problem:
    external_id = _id(obj)
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
    return Problem(external_id, messages, ground_truth, category, extra, line)


def _id(obj: dict[str, Any]) -> str:
    value = obj.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError('"id" is missing or not a non-empty string or integer')
    return str(value)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError('"messages" must be a non-empty list of {"role", "content"} objects')
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role is {role!r}: expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        out.append({"role": role, "content": content})
    users = [m for m in out if m["role"] == "user"]
    if not users:
        raise ValueError('"messages" has no user message: the last user message is the problem')
    if not users[-1]["content"].strip():
        raise ValueError("the last user message (the problem) is empty")
    return out


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
