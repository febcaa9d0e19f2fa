"""The synthesis prompt P(x, M) and the per-round input messages (ARCHITECTURE.md §1)."""

from __future__ import annotations

import copy
from typing import Any

import jinja2

# Table 6 of the PaCoRe report. PaCoRe-8B was trained on exactly this text: it is a wire format, keep it
# byte for byte. Jinja2 defaults (no trim_blocks) drop the final newline, as the reference pipeline does.
SYNTHESIS_TEMPLATE = """You are given a problem and a list of reference responses. Your job is to analyze these references and provide your own response.

Original Problem:
{{ original_prompt }}

Reference Responses:
{% for response in ref_responses %}
Reference {{ loop.index }}:
{{ response }}
{% endfor %}

Now, based on the original problem and reference responses above, please provide your own comprehensive solution.
"""

_TEMPLATE = jinja2.Environment(autoescape=False).from_string(SYNTHESIS_TEMPLATE)

Messages = list[dict[str, Any]]


def render_synthesis(original_prompt: str, ref_responses: list[str]) -> str:
    return _TEMPLATE.render(original_prompt=original_prompt, ref_responses=ref_responses)


def last_user_index(messages: Messages) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    raise ValueError("the conversation has no user message")


def synthesis_input(messages: Messages, ref_responses: list[str]) -> Messages:
    """The input of a round after the first, as the official pipeline builds it: a deep copy of the
    submitted conversation whose last user message's content is the synthesis prompt over the original
    problem; every other message and key passes through as submitted. Rendered also when there is no
    reference (every trajectory of the round empty or failed)."""
    i = last_user_index(messages)
    out = copy.deepcopy(messages)
    out[i]["content"] = render_synthesis(messages[i]["content"], ref_responses)
    return out
