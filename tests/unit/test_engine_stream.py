"""Folding a streamed chat completion into one result (the HTTP adapter's pure part)."""

from worker.engine import GenerationRequest, StreamAccumulator, request_body, sse_events


def chunk(delta=None, finish=None, usage=None):
    out = {
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
        if delta is not None or finish
        else []
    }
    if usage:
        out["usage"] = usage
    return out


def test_reasoning_field_and_continuous_usage() -> None:
    acc = StreamAccumulator()
    for c in [
        chunk({"role": "assistant", "content": ""}, usage={"prompt_tokens": 9, "completion_tokens": 0}),
        chunk({"reasoning": "think "}, usage={"prompt_tokens": 9, "completion_tokens": 1}),
        chunk({"reasoning": "more"}, usage={"prompt_tokens": 9, "completion_tokens": 2}),
        chunk({"content": " The answer is \\boxed{4}."}, usage={"prompt_tokens": 9, "completion_tokens": 9}),
        chunk({}, finish="stop", usage={"prompt_tokens": 9, "completion_tokens": 10}),
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 10}},
    ]:
        acc.add(c)
    r = acc.result()
    assert (r.reasoning, r.content, r.finish_reason, r.prompt_tokens, r.completion_tokens) == (
        "think more",
        " The answer is \\boxed{4}.",
        "stop",
        9,
        10,
    )


def test_older_servers_reasoning_content_field() -> None:
    acc = StreamAccumulator()
    acc.add(chunk({"reasoning_content": "r"}))
    acc.add(chunk({"content": "c"}, finish="length"))
    r = acc.result()
    assert (r.reasoning, r.content, r.finish_reason) == ("r", "c", "length")


def test_no_reasoning_field_means_none_not_empty() -> None:
    acc = StreamAccumulator()
    acc.add(chunk({"content": "<think>x</think>y"}, finish="stop"))
    assert acc.result().reasoning is None


def test_sse_parsing_stops_at_done() -> None:
    lines = ["", ": keep-alive", 'data: {"a": 1}', "data: [DONE]", 'data: {"b": 2}']
    assert list(sse_events(iter(lines))) == [{"a": 1}]


def test_request_body_sends_no_seed_unless_given() -> None:
    body = request_body(GenerationRequest([{"role": "user", "content": "Q"}], "m"))
    assert "seed" not in body and "max_tokens" not in body
    assert body["stream"] and body["stream_options"] == {
        "include_usage": True,
        "continuous_usage_stats": True,
    }
    assert request_body(GenerationRequest([], "m", 100, 0.7, 0.9, 5))["seed"] == 5
