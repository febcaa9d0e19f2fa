"""Compaction C(ω): the conclusion after the last </think>, or the content when reasoning came apart."""

import pytest

from pacore.core.compaction import Outcome, compact, split_reasoning

CASES = [
    # (status, content, reasoning, finish_reason, pass_truncated, expected)
    ("done", "<think>work</think> The answer is 4.", None, "stop", False, "The answer is 4."),
    ("done", "a</think>b</think> last part ", None, "stop", False, "last part"),
    ("done", " The answer is 4.", "work", "stop", False, "The answer is 4."),
    ("done", "no think tags at all", None, "stop", False, "no think tags at all"),
    ("done", "", "only reasoning", "stop", False, None),
    ("done", "   \n", None, "stop", False, None),
    ("failed", "<think>x</think> 4", None, "stop", False, None),
    ("cancelled", "4", "r", "stop", False, None),
    # truncated without a conclusion: nothing by default, the whole text when the campaign opts in
    ("done", "<think>long unfinished", None, "length", False, None),
    ("done", "<think>long unfinished", None, "length", True, "<think>long unfinished"),
    ("done", "", "long unfinished", "length", False, None),
    ("done", "", "long unfinished", "length", True, "long unfinished"),
    # truncated after the conclusion began: the partial conclusion is still a conclusion
    ("done", "<think>w</think> The ans", None, "length", False, "The ans"),
    ("done", " The ans", "w", "length", False, "The ans"),
]


@pytest.mark.parametrize(("status", "content", "reasoning", "finish", "pass_truncated", "expected"), CASES)
def test_compact(status, content, reasoning, finish, pass_truncated, expected) -> None:
    assert compact(Outcome(0, status, content, reasoning, finish), pass_truncated) == expected


def test_split_reasoning() -> None:
    assert split_reasoning("<think>\nwork\n</think> answer") == ("work", " answer")
    assert split_reasoning("plain") == (None, "plain")
