"""The round state machine: a finished round becomes the next round, the answer, or a failure."""

from pacore.core.compaction import Outcome
from pacore.core.prompts import render_synthesis
from pacore.core.rounds import after_round

PROBLEM = [{"role": "user", "content": "What is 2+2?"}]


def done(index: int, content: str) -> Outcome:
    return Outcome(index, "done", content, "thinking", "stop")


def test_a_middle_round_quotes_its_references_unstripped_in_the_official_order() -> None:
    # completed 2, 0, 1; lengths 6, 2, 24 -> by length [0, 2, 1]; Random(42) takes [a, b, c] to [b, a, c]
    completed = [done(2, "\n\nfour"), done(0, " 4"), done(1, " The answer is \\boxed{5}")]
    decision = after_round(1, 1, PROBLEM, completed, seed=42)
    assert decision.kind == "next_round" and decision.next_k == 1
    assert decision.order == [2, 0, 1] and decision.finish_order == [2, 0, 1]
    assert decision.next_messages == [
        {
            "role": "user",
            "content": render_synthesis("What is 2+2?", ["\n\nfour", " 4", " The answer is \\boxed{5}"]),
        }
    ]


def test_the_final_round_gives_the_answer() -> None:
    decision = after_round(None, 2, PROBLEM, [done(0, " The answer is \\boxed{4}.")], seed=42)
    assert decision.kind == "finish" and decision.answer == " The answer is \\boxed{4}."


def test_a_final_round_without_content_finishes_with_no_answer() -> None:
    truncated = Outcome(0, "done", "", "endless", "length")
    decision = after_round(None, 2, PROBLEM, [truncated], seed=42)
    assert decision.kind == "no_conclusion" and decision.run_status == "no_conclusion"
    assert decision.answer is None and decision.reason == "the final round gave no conclusion"


def test_a_failed_final_trajectory_fails_the_run() -> None:
    decision = after_round(None, 2, PROBLEM, [Outcome(0, "failed", None, None, None)], seed=42)
    assert decision.kind == "fail" and decision.reason == "the final round's trajectory failed"


def test_a_round_where_every_trajectory_failed_goes_on_with_no_reference() -> None:
    failed = [Outcome(i, "failed", None, None, None) for i in range(4)]
    decision = after_round(1, 1, PROBLEM, failed, seed=42)
    assert decision.kind == "next_round" and decision.references == []
    assert decision.next_messages == [{"role": "user", "content": render_synthesis("What is 2+2?", [])}]
    assert sorted(decision.order) == [0, 1, 2, 3]


def test_failures_and_empties_stay_in_the_order_but_give_no_reference() -> None:
    completed = [done(0, ""), Outcome(1, "failed", None, None, None), done(2, "x</think>")]
    decision = after_round(1, 1, PROBLEM, completed, seed=1)
    assert decision.references == [""] and sorted(decision.order) == [0, 1, 2]
