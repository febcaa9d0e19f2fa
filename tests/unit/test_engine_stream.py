"""Folding a streamed chat completion into one result (the HTTP adapter's pure part)."""

import asyncio
import re

import httpx
import pytest

from worker.engine import (
    EngineError,
    GenerationRequest,
    Patience,
    StreamAccumulator,
    _follow,
    request_body,
    sse_events,
)


def follow(body: str, guard=None, patience: Patience | None = None) -> None:
    """The stream reader over a whole response body, with a plain guard (the loop awaits an async one)."""

    async def asked(raw: str, streamed: int, ids: list[int] | None) -> bool:
        return guard(raw, streamed, ids)

    response = httpx.Response(200, text=body)
    asyncio.run(_follow(response, StreamAccumulator(), asked if guard else None, patience or Patience()))


async def events(lines: list[str]) -> list:
    async def each():
        for line in lines:
            yield line

    return [event async for event in sse_events(each())]


def chunk(delta=None, finish=None, usage=None, token_ids=None):
    out = {
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
        if delta is not None or finish
        else []
    }
    if token_ids is not None:
        out["choices"][0]["token_ids"] = token_ids
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
    assert asyncio.run(events(lines)) == [None, {"a": 1}]  # None: a comment, no event; the clock goes on


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("data: {not json\n\n", "a line that is not JSON: '{not json'"),
        ('data: {"choices": [null]}\n\n', "a choice that is not an object"),
        ('data: {"choices": null}\n\n', "a chunk without choices"),
        ('data: {"choices": []}\n\n', "a chunk without choices"),
        ("data: [1, 2]\n\n", "a chunk that is not a JSON object"),
        ('data: {"choices": [{"delta": {"content": 5}}]}\n\n', "text that is not a string"),
        ('data: {"choices": [{"delta": "x"}]}\n\n', "a delta that is not an object"),
    ],
)
def test_malformed_output_is_an_engine_error_with_the_engines_words(body: str, words: str) -> None:
    with pytest.raises(EngineError, match=re.escape(words)) as raised:
        follow(body)
    assert raised.value.kind == "malformed"


def test_keep_alives_are_not_progress() -> None:
    """A stream of keep-alive comments times out like a silent one: before its first token..."""
    keepalives = ": keepalive\n\n" * 3
    with pytest.raises(EngineError, match="no first token for") as raised:
        follow(keepalives, patience=Patience(first_token=0.0))
    assert raised.value.kind == "timeout"
    # ... and after it
    one = 'data: {"choices": [{"delta": {"content": "a"}}], "usage": {"completion_tokens": 1}}\n\n'
    with pytest.raises(EngineError, match="no new token for") as raised:
        follow(one + keepalives, patience=Patience(idle=0.0))
    assert raised.value.streamed == 1


def test_the_guard_is_asked_on_keep_alives_too() -> None:
    """So that cancel and drain act on a stream that sends nothing else."""
    asked: list[tuple[str, int]] = []

    def guard(raw: str, streamed: int, ids: list[int] | None) -> bool:
        asked.append((raw, streamed))
        return True

    stream = ": keepalive\n\n: keepalive\n\n"
    follow(stream, guard)
    assert asked and all(a == ("", 0) for a in asked)


def test_request_body_sends_no_seed_unless_given() -> None:
    body = request_body(GenerationRequest([{"role": "user", "content": "Q"}], "m"))
    assert "seed" not in body and "max_tokens" not in body
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert request_body(GenerationRequest([], "m", 100, 0.7, 0.9, 5))["seed"] == 5


def test_request_body_asks_for_coarse_chunks_and_a_running_count_only_without_ids() -> None:
    request = GenerationRequest([{"role": "user", "content": "Q"}], "m")
    assert request_body(request, stream_interval=128)["stream_interval"] == 128
    assert "stream_interval" not in request_body(request, stream_interval=1), "one token a chunk: the default"
    assert request_body(request, continuous_usage=True)["stream_options"] == {
        "include_usage": True,
        "continuous_usage_stats": True,
    }


def test_a_coarse_chunk_counts_its_token_ids_and_may_cross_the_end_of_thinking() -> None:
    """vLLM with stream_interval and a reasoning parser: one chunk carries several tokens' ids, and the
    one that crosses `</think>` has both reasoning and content; no usage until the end."""
    acc = StreamAccumulator()
    acc.add(chunk({"reasoning": "a b c"}, token_ids=[11, 12, 13]))
    assert acc.tokens == 3
    acc.add(chunk({"reasoning": " d", "content": " The answer"}, token_ids=[14, 151668, 20, 21]))
    assert acc.tokens == 7
    acc.add(chunk({}, finish="stop", token_ids=[151645]))
    acc.add({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 8}})
    r = acc.result()
    assert (r.reasoning, r.content, r.completion_tokens) == ("a b c d", " The answer", 8)
    assert r.raw == "a b c d</think> The answer"


def test_token_ids_are_kept_as_vllm_streams_them() -> None:
    """vLLM's chat stream with return_token_ids: the rendered prompt's ids on the first chunk, then each
    chunk's ids on its choice, including a chunk with no text (`</think>`, taken out by the parser)."""
    acc = StreamAccumulator()
    first = chunk({"role": "assistant", "content": ""})
    first["prompt_token_ids"] = [151644, 872, 198]
    acc.add(first)
    for delta, ids in [({"reasoning": "think"}, [1]), ({}, [151668]), ({"content": " 4"}, [2, 3])]:
        c = chunk(delta)
        c["choices"][0]["token_ids"] = ids
        acc.add(c)
    assert acc.take_ids() == [1, 151668, 2, 3] and acc.take_ids() == []
    done = chunk({}, finish="length")
    done["choices"][0]["token_ids"] = []
    acc.add(done)
    result = acc.result()
    assert result.prompt_ids == (151644, 872, 198) and result.token_ids == (1, 151668, 2, 3)
    assert result.raw == "think</think> 4" and (result.reasoning, result.content) == ("think", " 4")


def test_an_engine_without_token_ids_gives_none() -> None:
    acc = StreamAccumulator()
    acc.add(chunk({"content": "x"}))
    assert acc.take_ids() is None and acc.result().token_ids is None


def test_token_ids_that_are_not_integers_are_malformed() -> None:
    c = chunk({"content": "x"})
    c["choices"][0]["token_ids"] = ["a"]
    with pytest.raises(EngineError, match="malformed: the engine sent token ids that are not a list"):
        StreamAccumulator().add(c)


def test_every_request_asks_for_token_ids() -> None:
    assert request_body(GenerationRequest([], "m"))["return_token_ids"] is True
