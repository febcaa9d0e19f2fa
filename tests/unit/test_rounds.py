"""The round state machine: a finished round becomes the next round, the answer, or a failure."""

from pacore.core.compaction import Outcome
from pacore.core.ordering import order_messages
from pacore.core.prompts import render_synthesis
from pacore.core.rounds import after_round

PROBLEM = [{"role": "user", "content": "What is 2+2?"}]


def done(index: int, conclusion: str) -> Outcome:
    return Outcome(index, "done", f" {conclusion}", "thinking", "stop")


def test_a_middle_round_builds_the_next_synthesis_prompt_in_order() -> None:
    outcomes = [done(0, "4"), done(1, "The answer is \\boxed{5}"), done(2, "four")]
    decision = after_round(1, 1, PROBLEM, outcomes, seed=42)
    ordered = order_messages(outcomes, 42)
    assert decision.kind == "next_round" and decision.next_k == 1
    assert decision.order == [i for i, _ in ordered]
    assert decision.next_messages == [
        {"role": "user", "content": render_synthesis("What is 2+2?", [m for _, m in ordered])}
    ]


def test_the_final_round_gives_the_answer() -> None:
    decision = after_round(None, 2, PROBLEM, [done(0, "The answer is \\boxed{4}.")], seed=42)
    assert decision.kind == "finish" and decision.answer == "The answer is \\boxed{4}."


def test_a_final_round_without_conclusion_finishes_with_no_answer() -> None:
    truncated = Outcome(0, "done", "", "endless", "length")
    decision = after_round(None, 2, PROBLEM, [truncated], seed=42)
    assert decision.kind == "finish" and decision.answer is None and "without a conclusion" in decision.reason


def test_a_round_where_every_trajectory_failed_fails_the_run() -> None:
    failed = [Outcome(i, "failed", None, None, None) for i in range(4)]
    decision = after_round(1, 1, PROBLEM, failed, seed=42)
    assert decision.kind == "fail" and "every trajectory of round 1 failed" in decision.reason


def test_no_messages_from_a_round_means_the_original_problem_next() -> None:
    empties = [Outcome(i, "done", "", "r", "length") for i in range(2)]
    decision = after_round(1, 1, PROBLEM, empties, seed=42)
    assert decision.kind == "next_round" and decision.next_messages == PROBLEM and decision.order == []


def test_some_failures_leave_the_round_going_with_the_others() -> None:
    outcomes = [done(0, "4"), Outcome(1, "failed", None, None, None)]
    decision = after_round(1, 1, PROBLEM, outcomes, seed=1)
    assert decision.kind == "next_round" and decision.order == [0]
