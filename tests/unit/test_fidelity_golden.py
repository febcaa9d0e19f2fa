"""Fidelity: every golden case of `../shared/data/fidelity_golden.jsonl`, produced by running the
official PaCoRe pipeline's own code (`Exp.process_single`) on scripted responses that finish in a known
order, must come out of pacore's round code byte for byte: each round's input messages, each round's
stored responses in the official order, and the final response."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from pacore.core.compaction import Outcome
from pacore.core.problems import Problem, parse_line
from pacore.core.rounds import after_round
from tests.conftest import shared_file


@cache
def golden() -> list[dict[str, Any]]:
    with shared_file("fidelity_golden.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def completed(responses: list[dict[str, Any]]) -> list[Outcome]:
    """A round's scripted responses as pacore stores them, in the order they finished."""
    outcomes = [
        Outcome(i, "done", r["content"], r["reasoning_content"], "stop") for i, r in enumerate(responses)
    ]
    return sorted(outcomes, key=lambda o: responses[o.index]["finish_rank"])


def through_pacore(case: dict[str, Any], finish_order: bool = True) -> dict[str, Any]:
    """Drive pacore's parser and round decisions over the case's schedule (K + [1])."""
    problem = parse_line(json.dumps({"id": case["id"], "messages": case["messages"]}).encode(), 1)
    assert isinstance(problem, Problem), problem
    schedule = [*case["rounds"], 1]
    inputs, stored = [problem.messages], []
    for r, k in enumerate(schedule):
        responses = case["responses"][r]
        assert len(responses) == k
        outcomes = completed(responses) if finish_order else completed_by_index(responses)
        next_k = schedule[r + 1] if r + 1 < len(schedule) else None
        decision = after_round(next_k, r + 1, problem.messages, outcomes, case["seed"])
        by_index = {o.index: o for o in outcomes}
        stored.append(
            [
                {"content": by_index[i].response_content, "reasoning_content": by_index[i].response_reasoning}
                for i in decision.order
            ]
        )
        if decision.next_messages is not None:
            inputs.append(decision.next_messages)
    return {
        "round_inputs": inputs,
        "round_responses": stored,
        "final_response": stored[-1][0]["content"],
        "final_reasoning_content": stored[-1][0]["reasoning_content"],
    }


def completed_by_index(responses: list[dict[str, Any]]) -> list[Outcome]:
    return [Outcome(i, "done", r["content"], r["reasoning_content"], "stop") for i, r in enumerate(responses)]


def test_the_golden_file_is_the_one_the_issue_describes() -> None:
    cases = golden()
    assert len(cases) == 200 and len({c["id"] for c in cases}) == 200
    assert {c["seed"] for c in cases} == {0, 7, 42}
    assert [32, 4] in [c["rounds"] for c in cases]


@pytest.mark.parametrize("index", range(200))
def test_every_golden_case_matches_byte_for_byte(index: int) -> None:
    case = golden()[index]
    got = through_pacore(case)
    expected = case["expected"]
    for r, (mine, theirs) in enumerate(zip(got["round_inputs"], expected["round_inputs"], strict=True)):
        assert mine == theirs, f"{case['id']}: round {r + 1} input differs"
    assert got["round_responses"] == expected["round_responses"], case["id"]
    assert got["final_response"] == expected["final_response"]
    assert got["final_reasoning_content"] == expected["final_reasoning_content"]
    # byte for byte, not only equal as Python values
    assert json.dumps(got["round_inputs"], ensure_ascii=False) == json.dumps(
        expected["round_inputs"], ensure_ascii=False
    )


def test_index_order_would_fail_80_of_the_320_round_transitions() -> None:
    """The golden file can tell completion order from index order: the test above can fail."""
    transitions = differing = 0
    for case in golden():
        by_index = through_pacore(case, finish_order=False)["round_inputs"][1:]
        for mine, theirs in zip(by_index, case["expected"]["round_inputs"][1:], strict=True):
            transitions += 1
            differing += mine != theirs
    assert (transitions, differing) == (320, 80)
