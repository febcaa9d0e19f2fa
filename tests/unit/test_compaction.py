"""Compaction is the official `parse_answer`: the text after the last `</think>` in the content, else the
whole content, never stripped; only an empty content gives no reference."""

import pytest

from pacore.core.compaction import Outcome, parse_answer, reference, reference_kind

CASES = [
    # (status, content, reasoning, pass_truncated, expected reference)
    ("done", "\n\nThe answer is 4.", "work", False, "\n\nThe answer is 4."),
    ("done", " The answer is \\boxed{4}", "work", False, " The answer is \\boxed{4}"),
    ("done", "<think>work</think> The answer is 4.", None, False, " The answer is 4."),
    ("done", "a</think>b</think> last part ", None, False, " last part "),
    ("done", "x</think>", None, False, ""),  # an (empty) reference
    ("done", "no think tags at all\r\n", None, False, "no think tags at all\r\n"),
    ("done", "  \n\t", "r", False, "  \n\t"),  # whitespace-only content is a reference
    ("done", "", "only reasoning", False, None),
    ("done", None, "cut inside the reasoning", False, None),  # null content counts as ""
    ("failed", None, None, False, None),
    ("failed", "<think>x</think> 4", None, False, None),  # a failed call stores ""
    # pass_truncated: the reasoning of an empty content, unstripped; a content always wins
    ("done", "", "\n long unfinished ", True, "\n long unfinished "),
    ("done", None, "long unfinished", True, "long unfinished"),
    ("done", " The ans", "w", True, " The ans"),
    ("done", "", "", True, None),
    ("failed", None, "partial", True, None),
]


@pytest.mark.parametrize(("status", "content", "reasoning", "pass_truncated", "expected"), CASES)
def test_reference(status, content, reasoning, pass_truncated, expected) -> None:
    assert reference(Outcome(0, status, content, reasoning, "stop"), pass_truncated) == expected


@pytest.mark.parametrize("finish", ["stop", "length", "budget", None])
def test_the_finish_reason_changes_nothing(finish) -> None:
    truncated = Outcome(0, "done", "<think>long</think>\n\nThe ans", None, finish)
    assert reference(truncated) == "\n\nThe ans"


def test_parse_answer_is_the_text_after_the_last_think_end() -> None:
    assert parse_answer("a</think>b</think>c") == "c"
    assert parse_answer("plain") == "plain"
    assert parse_answer("") == ""


def test_the_official_response_fields_are_never_null() -> None:
    failed = Outcome(0, "failed", None, None, None)
    assert (failed.response_content, failed.response_reasoning) == ("", "")
    cut = Outcome(0, "done", None, "thinking", "length")
    assert (cut.response_content, cut.response_reasoning) == ("", "thinking")


def test_reference_kind() -> None:
    assert reference_kind(Outcome(0, "done", "\n\n4", "r", "stop")) == "conclusion"
    assert reference_kind(Outcome(0, "done", "", "r", "length")) == "none"
    assert reference_kind(Outcome(0, "done", "", "r", "length"), pass_truncated=True) == "reasoning"
