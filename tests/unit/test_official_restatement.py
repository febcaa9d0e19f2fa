"""The tests' restatement of the official rules (tests/official.py) reproduces the golden file, which the
official code itself produced: so it can judge pacore's rounds where the golden file does not reach
(a real fleet, a real vLLM)."""

import json

from tests.conftest import shared_file
from tests.official import next_input, stored_round


def test_the_restatement_reproduces_every_golden_case() -> None:
    with shared_file("fidelity_golden.jsonl").open(encoding="utf-8") as f:
        cases = [json.loads(line) for line in f]
    for case in cases:
        inputs, stored = [case["messages"]], []
        for responses in case["responses"]:
            completed = sorted(responses, key=lambda r: r["finish_rank"])
            plain = [
                {"content": r["content"], "reasoning_content": r["reasoning_content"]} for r in completed
            ]
            stored.append(stored_round(plain, case["seed"]))
            inputs.append(next_input(case["messages"], stored[-1]))
        assert inputs[:-1] == case["expected"]["round_inputs"], case["id"]
        assert stored == case["expected"]["round_responses"], case["id"]
