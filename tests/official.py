"""A small restatement of the official PaCoRe rules (stepfun-ai/PaCoRe `pacore/batch_inference/base_exp.py`,
`Exp._run_parallel_calls` and `Exp.process_single`), written from that code, not from pacore's: the
tests' independent way to say what each round's input must be. `tests/unit/test_official_restatement.py`
checks it against the golden file the official code produced."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jinja2

# Exp.format_controller_prompt's text, byte for byte.
_CONTROLLER = """\
You are given a problem and a list of reference responses. Your job is to analyze these references and provide your own response.

Original Problem:
{{ original_prompt }}

Reference Responses:
{% for response in ref_responses %}
Reference {{ loop.index }}:
{{ response }}
{% endfor %}

Now, based on the original problem and reference responses above, please provide your own comprehensive solution.
"""


def stored_round(responses_in_completion_order: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The round's `round_responses`: sorted by len(content) (stable), then shuffled by Random(seed)."""
    responses = list(responses_in_completion_order)
    responses.sort(key=lambda x: len(x["content"]))
    random.Random(seed).shuffle(responses)
    return responses


def next_input(messages: list[dict[str, Any]], stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next round's messages from the previous round's stored responses."""
    original_prompt = ""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            original_prompt = msg.get("content", "")
            break
    prev_answers = [r["content"].split("</think>")[-1] for r in stored if r.get("content")]
    current = copy.deepcopy(messages)
    for i in range(len(current) - 1, -1, -1):
        if current[i].get("role") == "user":
            current[i]["content"] = jinja2.Template(_CONTROLLER).render(
                original_prompt=original_prompt, ref_responses=prev_answers
            )
            break
    return current


def assert_follows_official(record: dict[str, Any], messages: list[dict[str, Any]], seed: int) -> int:
    """An exported run against the official rules: from each round's completion order
    (`round_finish_order`), the official stored order must be the exported `round_responses`, and the
    next round's input must be the exported `round_inputs`, byte for byte. Returns the transitions checked."""
    assert record["round_inputs"][0] == messages
    rounds = list(
        zip(record["round_order"], record["round_finish_order"], record["round_responses"], strict=True)
    )
    for r, (order, finished, responses) in enumerate(rounds):
        by_index = dict(zip(order, responses, strict=True))
        assert sorted(finished) == sorted(order) == list(range(len(order)))
        stored = stored_round([by_index[i] for i in finished], seed)
        assert stored == responses, f"{record['request_id']}: round {r + 1}'s stored order"
        if r + 1 < len(rounds):
            expected = next_input(messages, stored)
            got = record["round_inputs"][r + 1]
            assert json.dumps(got, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False), (
                f"{record['request_id']}: round {r + 2}'s input"
            )
    final = record["round_responses"][-1][0]
    assert (record["final_response"], record["final_reasoning_content"]) == (
        final["content"],
        final["reasoning_content"],
    )
    return len(rounds) - 1
