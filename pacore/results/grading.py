"""Grading answers against ground truth with math-verify, in a pool of subprocesses.

The final answer is extracted here (`pacore.core.answers.final_answer`: the last `\\boxed{}` or `\\fbox{}`
with nested braces, else a closing "the answer is ..." sentence), then math-verify parses it and the
ground truth and compares them symbolically. math-verify guards its own parsing and comparison with
SIGALRM, which works only in a process's main thread: so each item is graded in a worker process's main
thread, and a worker stuck past the outer timeout is killed with its pool (the item is `timeout`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pacore.core.answers import final_answer

CORRECT, INCORRECT, NO_ANSWER, TIMEOUT = "correct", "incorrect", "no_answer", "timeout"
ITEM_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Verdict:
    grade: str  # correct | incorrect | no_answer | timeout
    answer: str | None  # the extracted final answer
    how: str  # where it came from: boxed, answer-is, or none


def grade_one(item: tuple[str | None, str | None]) -> Verdict:
    """(response, ground-truth answer) -> verdict. Runs math-verify in this process's main thread."""
    response, truth = item
    answer, how = final_answer(response)
    if answer is None:
        return Verdict(NO_ANSWER, None, how)
    if truth is None:
        return Verdict(INCORRECT, answer, how)
    from math_verify import parse, verify

    gold = parse(_as_math(truth), parsing_timeout=5)
    pred = parse(_as_math(answer), parsing_timeout=5)
    if not gold or not pred:  # unparsable on either side: compare the normalised text
        same = _plain(answer) == _plain(truth)
        return Verdict(CORRECT if same else INCORRECT, answer, how)
    return Verdict(CORRECT if verify(gold, pred, timeout_seconds=5) else INCORRECT, answer, how)


def _as_math(text: str) -> str:
    return f"${text}$"


def _plain(text: str) -> str:
    return "".join(text.split()).strip("$.").lower()


class Grader:
    """A pool of grading subprocesses, kept across calls (an export grades batch after batch)."""

    def __init__(self, workers: int | None = None, timeout: float = ITEM_TIMEOUT_SECONDS) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.timeout = timeout
        self.context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        self.pool: Any = None

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def grade(
        self, items: Sequence[tuple[str | None, str | None]], progress: Callable[[int], None] | None = None
    ) -> list[Verdict]:
        """Grade in order, calling `progress` with the count graded so far. An item whose worker is stuck
        past math-verify's own timeouts is `timeout`; its pool is killed and a new one grades the rest."""
        results: list[Verdict | None] = [None] * len(items)
        pending = list(range(len(items)))
        while pending:
            if self.pool is None:
                self.pool = self.context.Pool(self.workers)
            answers = self.pool.imap(grade_one, [items[i] for i in pending], chunksize=1)
            position = 0  # of the item being waited for
            try:
                while position < len(pending):
                    results[pending[position]] = answers.next(self.timeout)
                    position += 1
                    if progress is not None:
                        progress(len(items) - len(pending) + position)
                pending = []
            except multiprocessing.TimeoutError:
                stuck = pending[position]
                results[stuck] = Verdict(TIMEOUT, final_answer(items[stuck][0])[0], "timeout")
                pending = pending[position + 1 :]
                self.pool.terminate()
                self.pool = None
        return [r for r in results if r is not None]


def grade_many(
    items: Sequence[tuple[str | None, str | None]],
    workers: int | None = None,
    timeout: float = ITEM_TIMEOUT_SECONDS,
    progress: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Grade in order, in `workers` subprocesses (default: the CPU count)."""
    if not items:
        return []
    with Grader(workers, timeout) as grader:
        return grader.grade(items, progress)


class GradeFileError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    line: int
    problem_id: str
    response: str | None
    truth: str | None
    reference: bool | None  # the file's own verdict (`source_correct`), when it has one


def read_records(path: str) -> list[Record]:
    """Records of recorded outputs: `response` (or `final_response`, as `pacore export` writes) and
    `ground_truth.answer`; `source_correct` is read as a reference verdict when present."""
    import json

    records, problems = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise GradeFileError(
                    f"{path}:{number}: not JSON ({exc.msg}); fix or remove the line"
                ) from exc
            if not isinstance(obj, dict):
                problems.append(f"{number}: not a JSON object")
                continue
            response = obj.get("response", obj.get("final_response"))
            truth = (
                (obj.get("ground_truth") or {}).get("answer")
                if isinstance(obj.get("ground_truth"), dict)
                else None
            )
            if "response" not in obj and "final_response" not in obj:
                problems.append(f"{number}: no `response` or `final_response` field")
                continue
            if truth is None:
                problems.append(f"{number}: no `ground_truth.answer`")
                continue
            pid = str(obj.get("problem_id", obj.get("id", number)))
            reference = obj.get("source_correct")
            records.append(
                Record(number, pid, response, str(truth), reference if isinstance(reference, bool) else None)
            )
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise GradeFileError(f"{path}: {len(problems)} line(s) cannot be graded: {shown}")
    return records


def summarize(records: Sequence[Record], verdicts: Sequence[Verdict]) -> dict[str, object]:
    """Counts, accuracy, pass@1 (mean over problems of the mean over their samples) and, where the
    records carry reference verdicts, the agreement with them and each disagreement."""
    from collections import Counter, defaultdict

    counts = Counter(v.grade for v in verdicts)
    per_problem: dict[str, list[bool]] = defaultdict(list)
    for record, verdict in zip(records, verdicts, strict=True):
        per_problem[record.problem_id].append(verdict.grade == CORRECT)
    pass_at_1 = sum(sum(v) / len(v) for v in per_problem.values()) / len(per_problem) if per_problem else 0.0
    referenced = [(r, v) for r, v in zip(records, verdicts, strict=True) if r.reference is not None]
    disagreements = [
        {
            "line": r.line,
            "problem_id": r.problem_id,
            "truth": r.truth,
            "extracted": v.answer,
            "how": v.how,
            "grade": v.grade,
            "reference_correct": r.reference,
        }
        for r, v in referenced
        if (v.grade == CORRECT) != r.reference
    ]
    return {
        "records": len(records),
        "problems": len(per_problem),
        **{grade: counts.get(grade, 0) for grade in (CORRECT, INCORRECT, NO_ANSWER, TIMEOUT)},
        "accuracy": counts.get(CORRECT, 0) / len(records) if records else 0.0,
        "pass_at_1": pass_at_1,
        "referenced": len(referenced),
        "agreement": (len(referenced) - len(disagreements)) / len(referenced) if referenced else None,
        "disagreements": disagreements,
    }
