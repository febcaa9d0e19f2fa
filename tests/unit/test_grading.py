"""Final-answer extraction and grading with math-verify in subprocesses (no services)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pacore.core.answers import final_answer
from pacore.results import grading
from pacore.results.grading import Verdict, grade_many, grade_one
from tests.conftest import pacore_executable, shared_file


def test_final_answer_takes_the_last_box_with_nested_braces_then_a_closing_sentence() -> None:
    assert final_answer(r"first \boxed{1}, then \boxed{\frac{1}{2}}.") == (r"\frac{1}{2}", "boxed")
    assert final_answer(r"so \fbox{7}") == ("7", "boxed")
    assert final_answer("We are done.\nThe final answer is $42$.") == ("42", "answer-is")
    assert final_answer("the answer is 3 apples, I think\nbut I am unsure") == (None, "none")
    assert final_answer(None) == (None, "none") and final_answer(r"\boxed{unclosed") == (None, "none")


def test_grades_compare_symbolically() -> None:
    assert grade_one((r"so \boxed{\frac{1}{2}}", "0.5")).grade == "correct"
    assert grade_one((r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)")).grade == "correct"
    assert grade_one((r"\boxed{3}", "4")).grade == "incorrect"
    assert grade_one(("no box here", "4")) == Verdict("no_answer", None, "none")


def hang_on_marker(item: tuple[str | None, str | None]) -> Verdict:
    if item[0] == "HANG":
        time.sleep(60)
    return grade_one(item)


def test_a_stuck_item_times_out_alone_and_the_rest_are_graded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "grade_one", hang_on_marker)
    items = [(r"\boxed{1}", "1"), ("HANG", "1"), (r"\boxed{2}", "3"), (r"\boxed{4}", "4")]
    verdicts = grade_many(items, workers=2, timeout=2)
    assert [v.grade for v in verdicts] == ["correct", "timeout", "incorrect", "correct"]


def test_pacore_grade_agrees_with_the_recorded_reference_verdicts() -> None:
    path = shared_file("outputs_qwen25math_math.jsonl")
    done = subprocess.run([pacore_executable(), "grade", str(path), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["records"] == 800 and summary["referenced"] == 800
    assert summary["agreement"] >= 0.99
    # The one disagreement: the reference grader did not read "10{,}000" as 10000.
    assert [(d["problem_id"], d["truth"], d["extracted"]) for d in summary["disagreements"]] == [
        ("math_test_idx72", "10{,}000", "10000")
    ]


def test_pacore_grade_names_the_lines_it_cannot_grade(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "x"}\n{"final_response": "y", "ground_truth": {"answer": "1"}}\n[1]\n')
    done = subprocess.run([pacore_executable(), "grade", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "2 line(s) cannot be graded: 1: no `ground_truth.answer`; 3: not a JSON object" in done.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    done = subprocess.run([pacore_executable(), "grade", str(broken)], capture_output=True, text=True)
    assert done.returncode != 0 and "broken.jsonl:1: not JSON" in done.stderr
