"""The synthesis prompt is a wire format: PaCoRe-8B was trained on it byte for byte."""

import pytest

from pacore.core.prompts import render_synthesis, synthesis_input

GOLDEN = (
    "You are given a problem and a list of reference responses. Your job is to analyze these references and "
    "provide your own response.\n\nOriginal Problem:\nWhat is 2+2?\n\nReference Responses:\n\nReference 1:\n4\n\n"
    "Reference 2:\nThe answer is \\boxed{5}\n\n\nNow, based on the original problem and reference responses "
    "above, please provide your own comprehensive solution."
)


def test_golden_case_from_the_architecture_document() -> None:
    assert render_synthesis("What is 2+2?", ["4", "The answer is \\boxed{5}"]) == GOLDEN


def test_no_references_renders_an_empty_list_section() -> None:
    text = render_synthesis("P", [])
    assert text.endswith(
        "Reference Responses:\n\n\nNow, based on the original problem and reference responses above, please provide your own comprehensive solution."
    )


def test_jinja_syntax_in_a_problem_or_reference_is_text_not_template() -> None:
    text = render_synthesis("Is {{ x }} {% raw %}?", ["{{ y }}"])
    assert "Is {{ x }} {% raw %}?" in text and "\n{{ y }}\n" in text


def test_a_round_without_references_still_gets_the_synthesis_prompt() -> None:
    messages = [{"role": "user", "content": "Q"}]
    out = synthesis_input(messages, [])
    assert out == [{"role": "user", "content": render_synthesis("Q", [])}]
    assert messages == [{"role": "user", "content": "Q"}], "the input conversation is not mutated"


MULTI_TURN = [
    {"role": "system", "content": "Be careful."},
    {"role": "user", "content": "First question"},
    {"role": "assistant", "content": "First answer"},
    {"role": "user", "content": "The problem"},
]


def test_later_rounds_replace_only_the_last_user_message() -> None:
    out = synthesis_input(MULTI_TURN, ["a", "b"])
    assert out[:3] == MULTI_TURN[:3]
    assert out[3] == {"role": "user", "content": render_synthesis("The problem", ["a", "b"])}
    assert MULTI_TURN[3]["content"] == "The problem", "the input conversation is not mutated"


def test_last_user_message_may_precede_an_assistant_turn() -> None:
    messages = [{"role": "user", "content": "P"}, {"role": "assistant", "content": "prefill"}]
    out = synthesis_input(messages, ["r"])
    assert out[0]["content"] == render_synthesis("P", ["r"]) and out[1] == messages[1]


def test_a_conversation_without_user_message_is_refused() -> None:
    with pytest.raises(ValueError, match="no user message"):
        synthesis_input([{"role": "system", "content": "x"}], ["r"])


def test_every_other_message_and_key_passes_through_as_submitted() -> None:
    messages = [
        {"role": "developer", "content": "D", "name": "ops"},
        {"role": "user", "content": "P", "name": "alice"},
        {"role": "assistant", "content": "prefill", "reasoning_content": "r"},
    ]
    out = synthesis_input(messages, ["r"])
    assert out[0] == messages[0] and out[2] == messages[2]
    assert out[1] == {"role": "user", "content": render_synthesis("P", ["r"]), "name": "alice"}
