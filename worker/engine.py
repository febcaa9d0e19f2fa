"""The engine seam: vLLM's OpenAI-compatible server over HTTP, streamed.

A fresh generation goes through the chat API (the server renders the prompt and parses the reasoning
out). A continuation (the next segment of a trajectory, or a checkpointed one resumed, ARCHITECTURE.md
§3) goes through the raw completions API: the exact rendered prompt followed by the token ids generated
so far, as the engine sent them (`return_token_ids`; only an engine that sends none has the text
tokenized again), split into reasoning and content on the client. The chat API's
`continue_final_message` cannot do this for Qwen3-family templates, which re-render a final assistant
turn with a closed think block (vllm-project/vllm#28089).

The HTTP client does no retrying of its own, so that retry policy lives in one place (tenacity at the
task edge). Every generation of a process streams on the process's one event loop (`worker.loop`), over
one asyncio connection pool; the Celery thread that asked waits for it. The per-chunk guard runs on the
loop when it says it will not wait, else on a guard thread (it reserves budget in PostgreSQL). A stream that sends nothing at all (a hung engine: no
headers, or headers then silence) never reaches the guard, so another thread can `cut` it while it
waits on the engine (the worker's watchdog does, for cancel, drain, a lost engine and the first-token
and idle timeouts). Health checks and model lists go through a small blocking client of their own: a
pool full of waiting streams never delays them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from pacore.core.compaction import THINK_END, parse_output
from pacore.core.urls import engine_root, redact
from pacore.settings import DEFAULT_STREAM_INTERVAL
from worker import lean_http
from worker.loop import LoopThread


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, Any]]
    model: str
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    # Raw text generated so far by earlier segments or attempts (reasoning, `</think>`, content):
    # continue after it, from its token ids when they are known.
    prefix: str = ""
    prefix_ids: tuple[int, ...] | None = None
    prompt_ids: tuple[int, ...] | None = None  # the rendered chat prompt, when an earlier segment learned it


@dataclass
class GenerationResult:
    """Content and reasoning cover the prefix too; the token counts are this request's."""

    content: str
    reasoning: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    prompt_ids: tuple[int, ...] | None = None  # the rendered chat prompt's ids, when known
    context_bound: bool = False  # its max_tokens was lowered to the room left in the model's context
    raw: str = ""  # this request's raw text (reasoning, `</think>`, content), as checkpoints keep it
    token_ids: tuple[int, ...] | None = None  # this request's generated ids (None: the engine sent none)


class EngineError(Exception):
    """The engine could not produce a generation; `kind` says why (http, connect: refused, connection:
    broken, timeout, stream, malformed: output that is not what the API promises).
    `streamed` is how many tokens arrived before it failed: spent, though not kept."""

    def __init__(self, kind: str, message: str, status: int | None = None, streamed: int = 0) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.status = status
        self.streamed = streamed
        self.prompt_ids: tuple[int, ...] | None = None  # the rendered prompt, if the stream got that far


class CannotContinue(EngineError):
    """The engine has no raw completions or tokenize API: a checkpoint cannot be continued there."""

    def __init__(self, message: str) -> None:
        super().__init__("unsupported", message)


class HandBack(Exception):
    """Raised by a guard to stop a stream and give the trajectory back (drain, engine lost); the
    checkpoint keeps what was generated."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Called with the raw text that arrived since the last call, the tokens this request streamed so far and
# the token ids that arrived since the last call (None: the engine sends none); False stops the stream
# there (finish reason `budget`). It may also raise to stop the stream. What comes with the finish reason
# is not passed to it: the result has all (`raw`, `token_ids`).
Guard = Callable[[str, int, "list[int] | None"], bool]
# Called with the tokens the request has streamed, just before the guard: whether the guard's call may
# wait (on the database: it reserves budget). False lets the event loop call the guard itself, without a
# hop to a guard thread; None (no such callable): every call may wait.
MayBlock = Callable[[int], bool]
BUDGET = "budget"


def refused_before_start() -> GenerationResult:
    return GenerationResult("", None, BUDGET, 0, 0)


class Engine(Protocol):
    def generate(
        self, request: GenerationRequest, guard: Guard | None = None, may_block: MayBlock | None = None
    ) -> GenerationResult: ...

    def health(self) -> bool: ...

    def close(self) -> None: ...


def request_body(
    request: GenerationRequest,
    prompt: list[int] | None = None,
    stream_interval: int = DEFAULT_STREAM_INTERVAL,
    continuous_usage: bool = False,
) -> dict[str, Any]:
    """A chat request, or with `prompt` (token ids) a raw completions request, streamed in chunks of
    `stream_interval` tokens (vLLM's per-request setting, which its first and last chunks skip; servers
    without it ignore the field): every chunk costs the engine's API server Python time, so a coarse
    stream keeps the engine at the speed of non-streaming requests. Tokens are counted from the ids each
    chunk carries (`return_token_ids`); `continuous_usage` asks for a running count in every chunk
    instead, for an engine that sends no ids (with a reasoning parser vLLM copies the whole token list
    for it per chunk: quadratic)."""
    body: dict[str, Any] = {
        "model": request.model,
        **({"messages": request.messages} if prompt is None else {"prompt": prompt}),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stream": True,
        "stream_options": {
            "include_usage": True,
            **({"continuous_usage_stats": True} if continuous_usage else {}),
        },
        # the generated token ids, to count them and continue from exactly them (vLLM >= 0.10.2)
        "return_token_ids": True,
    }
    if stream_interval > 1:
        body["stream_interval"] = stream_interval
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.seed is not None:
        body["seed"] = request.seed
    return body


class StreamAccumulator:
    """Folds streamed chunks into one result: chat chunks (reasoning arrives as `reasoning` in current
    vLLM, `reasoning_content` in older servers) or raw completions chunks (`text`, split on the client
    after `prefix`). Also keeps the raw text, `</think>` included, for checkpoints (`take_raw`)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.text: list[str] = []  # raw completions text
        self.saw_reasoning = False
        self.finish_reason: str | None = None
        self.usage: dict[str, int] = {}
        self.raw: list[str] = []
        self.taken = 0
        self.deltas = 0
        self.prompt_ids: list[int] | None = None
        self.ids: list[int] = []
        self.ids_taken = 0
        self.has_ids = False

    def add(self, chunk: dict[str, Any]) -> None:
        _check_chunk(chunk)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("prompt_token_ids") is not None:  # the chat API's first chunk
            self.prompt_ids = _token_ids(chunk["prompt_token_ids"], chunk)
        for choice in chunk.get("choices") or []:
            if choice.get("token_ids") is not None:
                self.ids.extend(_token_ids(choice["token_ids"], chunk))
                self.has_ids = True
            delta = choice.get("delta") or {}
            piece = delta.get("reasoning", delta.get("reasoning_content"))
            if piece is not None:
                self.saw_reasoning = True
                self.reasoning.append(piece)
                self.raw.append(piece)
                self.deltas += 1
            if delta.get("content"):
                if self.saw_reasoning and not self.content:
                    self.raw.append(THINK_END)  # the reasoning parser took it out of the stream
                self.content.append(delta["content"])
                self.raw.append(delta["content"])
                self.deltas += 1
            if choice.get("text"):
                self.text.append(choice["text"])
                self.raw.append(choice["text"])
                self.deltas += 1
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def take_raw(self) -> str:
        """The raw text that arrived since the last call."""
        new = "".join(self.raw[self.taken :])
        self.taken = len(self.raw)
        return new

    def take_ids(self) -> list[int] | None:
        """The token ids that arrived since the last call; None when the engine sends none."""
        if not self.has_ids:
            return None
        new = self.ids[self.ids_taken :]
        self.ids_taken = len(self.ids)
        return new

    @property
    def tokens(self) -> int:
        """Tokens so far: the ids the engine sent, else its count (every chunk's, when asked for, or the
        last one's), else one per delta received (a server without ids streams a token per chunk); never
        less than the engine's own count."""
        counted = len(self.ids) if self.has_ids else self.deltas
        return max(counted, int(self.usage.get("completion_tokens", 0)))

    def result(self) -> GenerationResult:
        prompt_ids = None if self.prompt_ids is None else tuple(self.prompt_ids)
        token_ids = tuple(self.ids) if self.has_ids else None
        raw = "".join(self.raw)
        if self.prefix or self.text:
            reasoning, content = parse_output(self.prefix + "".join(self.text))
        else:
            content = "".join(self.content)
            reasoning = "".join(self.reasoning) if self.saw_reasoning else None
        return GenerationResult(
            content,
            reasoning,
            self.finish_reason,
            int(self.usage.get("prompt_tokens", 0)),
            self.tokens,
            prompt_ids,
            raw=raw,
            token_ids=token_ids,
        )


def _token_ids(value: Any, chunk: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) for t in value):
        raise _malformed("token ids that are not a list of integers", chunk)
    return value


def _malformed(what: str, sample: Any) -> EngineError:
    return EngineError("malformed", f"the engine sent {what}: {str(sample)[:200]!r}")


def _check_chunk(chunk: Any) -> None:
    """A streamed chunk as the OpenAI API promises it; anything else is the engine's fault, named."""
    if not isinstance(chunk, dict):
        raise _malformed("a chunk that is not a JSON object", chunk)
    choices = chunk.get("choices")
    if choices is None or not isinstance(choices, list) or (not choices and not chunk.get("usage")):
        raise _malformed("a chunk without choices", chunk)
    for choice in choices:
        if not isinstance(choice, dict):
            raise _malformed("a choice that is not an object", chunk)
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, dict):
            raise _malformed("a delta that is not an object", chunk)
        for value in [
            choice.get("text"),
            *((delta or {}).get(k) for k in ("content", "reasoning", "reasoning_content")),
        ]:
            if value is not None and not isinstance(value, str):
                raise _malformed("text that is not a string", chunk)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any] | None]:
    """The events of a server-sent-events stream, parsed; None for a line that carries none (a
    keep-alive comment), so that the reader keeps its clocks. Blank lines only separate events."""
    async for line in lines:
        if not line:
            continue
        if not line.startswith("data:"):
            yield None
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError:
            raise _malformed("a line that is not JSON", data) from None


# The guard as the stream reader awaits it (`_Call.ask`: on the loop, or on a guard thread when it may wait).
AsyncGuard = Callable[[str, int, "list[int] | None"], Awaitable[bool]]


class _Call:
    """One generation on the event loop, as the watchdog may cut it: only while it waits on the engine
    (its task is in `cuttable`), never while its guard runs (the guard's thread would go on alone)."""

    def __init__(
        self,
        looper: LoopThread,
        guard: Guard | None,
        may_block: MayBlock | None,
        thread: int,
        cuttable: dict[int, _Call],
    ) -> None:
        self.looper, self.guard, self.may_block = looper, guard, may_block
        self.thread, self.cuttable = thread, cuttable
        self.task = asyncio.current_task()
        self.was_cut = False
        cuttable[thread] = self

    async def ask(self, raw: str, streamed: int, ids: list[int] | None) -> bool:
        if self.guard is None:
            return True
        if self.may_block is not None and not self.may_block(streamed):
            return self.guard(raw, streamed, ids)  # nothing in it waits: on the loop, no thread hop
        del self.cuttable[self.thread]
        try:
            return await self.looper.guarded(self.guard, raw, streamed, ids)
        finally:
            self.cuttable[self.thread] = self

    def cut(self) -> None:
        self.was_cut = True
        assert self.task is not None
        self.task.cancel()

    def cut_error(self, streamed: int) -> EngineError:
        """The cancellation the watchdog sent, as the broken stream it stands for."""
        if self.task is not None:
            self.task.uncancel()
        return EngineError(
            "connection", "the stream was cut while it waited on the engine", streamed=streamed
        )

    def end(self) -> None:
        self.cuttable.pop(self.thread, None)


class OpenAIEngine:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        pool: int = 256,
        first_token_timeout: float = 1800.0,
        idle_timeout: float = 300.0,
        stream_interval: int = DEFAULT_STREAM_INTERVAL,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = engine_root(base_url)  # the server root, also when given as its `.../v1` base URL
        self.shown_url = redact(self.base_url)  # for messages and logs: never its password
        self.patience = Patience(first_token_timeout, idle_timeout)
        self._context: dict[str, int | None] = {}
        self.health_error: str | None = None  # why the last /health failed
        self.stream_interval = stream_interval
        self.sends_ids: bool | None = None  # None: not known yet (no stream has carried text)
        # the generations' loop, with a guard thread per connection: guards waiting on the database
        # (an outage) never hold up another stream's guard
        self.looper = LoopThread("engine-loop", guard_threads=pool)
        self._cuttable: dict[int, _Call] = {}  # generating thread -> its call, while it waits on the engine
        # the generations' client: a lean one (worker.lean_http), as httpx's asyncio path cost more CPU per
        # request than all of a trajectory's database work
        self.client = lean_http.AsyncClient(
            self.base_url, headers, timeout=timeout, connect_timeout=10.0, pool=pool
        )
        self.control = httpx.Client(base_url=self.base_url, headers=headers, timeout=10.0)

    def cut(self, thread: int) -> bool:
        """Cut the stream `thread` is waiting on (False: it is not waiting on the engine just now)."""

        async def cut() -> bool:
            call = self._cuttable.get(thread)
            if call is None:
                return False
            call.cut()
            return True

        return self.looper.call(cut(), timeout=10.0)

    def health(self) -> bool:
        try:
            status = self.control.get("/health", timeout=5.0).status_code
        except httpx.HTTPError as exc:
            self.health_error = f"{type(exc).__name__}: {exc}"
            return False
        self.health_error = None if status == 200 else f"HTTP {status}"
        return status == 200

    def served_models(self) -> list[str]:
        return [m["id"] for m in self._models()]

    def context_length(self, model: str) -> int | None:
        """The model's context length as the server states it (vLLM: `max_model_len`), None if unstated.
        Asked once per model."""
        if model not in self._context:
            length = next((m.get("max_model_len") for m in self._models() if m.get("id") == model), None)
            self._context[model] = int(length) if isinstance(length, int) and length > 0 else None
        return self._context[model]

    def _models(self) -> list[dict[str, Any]]:
        response = self.control.get("/v1/models", timeout=10.0)
        response.raise_for_status()
        return list(response.json().get("data", []))

    def generate(
        self, request: GenerationRequest, guard: Guard | None = None, may_block: MayBlock | None = None
    ) -> GenerationResult:
        """Stream on the event loop; the calling thread waits (the watchdog cuts by its id)."""
        return self.looper.call(self._generate(request, guard, may_block, threading.get_ident()))

    async def _generate(
        self, request: GenerationRequest, guard: Guard | None, may_block: MayBlock | None, thread: int
    ) -> GenerationResult:
        call = _Call(self.looper, guard, may_block, thread, self._cuttable)
        try:
            return await self._generate_call(request, call)
        except asyncio.CancelledError:  # cut before the stream began (tokenizing a continuation)
            if not call.was_cut:
                raise
            raise call.cut_error(0) from None
        finally:
            call.end()

    async def _generate_call(self, request: GenerationRequest, call: _Call) -> GenerationResult:
        if not await call.ask("", 0, None):
            return refused_before_start()
        context_bound = False
        if request.prefix or request.prefix_ids:
            prompt, room = await self._continuation_prompt(request)
            # the completions API's default is 16 tokens, not "to the end"; more than the room is refused
            if room is not None and (request.max_tokens is None or request.max_tokens > room):
                request, context_bound = replace(request, max_tokens=room), True
            if request.max_tokens == 0:  # the context is full: nothing more can be generated
                reasoning, content = parse_output(request.prefix)
                return GenerationResult(content, reasoning, "length", 0, 0, request.prompt_ids, True)
            path, body = "/v1/completions", request_body(request, prompt, **self._stream_options())
        else:
            path, body = "/v1/chat/completions", request_body(request, **self._stream_options())
        acc = StreamAccumulator(request.prefix)
        try:
            await self._stream(path, body, request, acc, call)
            if acc.deltas:
                self.sends_ids = acc.has_ids
            if acc.finish_reason is None:
                raise EngineError("stream", "the stream ended without a finish reason", streamed=acc.tokens)
        except EngineError as exc:  # what the stream learned is not lost with it: the next try continues
            exc.prompt_ids = None if acc.prompt_ids is None else tuple(acc.prompt_ids)
            raise
        result = acc.result()
        prompt_ids = request.prompt_ids if request.prefix or request.prefix_ids else result.prompt_ids
        return replace(result, prompt_ids=prompt_ids, context_bound=context_bound)

    def _stream_options(self) -> dict[str, Any]:
        # an engine known to send no token ids is asked for a running count in every chunk instead
        return {"stream_interval": self.stream_interval, "continuous_usage": self.sends_ids is False}

    async def _stream(
        self, path: str, body: dict[str, Any], request: GenerationRequest, acc: StreamAccumulator, call: _Call
    ) -> None:
        try:
            async with self.client.stream("POST", path, json=body) as response:
                if (request.prefix or request.prefix_ids) and response.status_code in (404, 405):
                    raise CannotContinue(f"the engine at {self.shown_url} has no {path} endpoint")
                if response.status_code >= 400:
                    raise EngineError("http", await _error_message(response), response.status_code)
                await _follow(response, acc, call.ask if call.guard else None, self.patience)
        except asyncio.CancelledError:
            if not call.was_cut:
                raise
            raise call.cut_error(acc.tokens) from None
        except lean_http.Timeout as exc:
            raise EngineError("timeout", f"{exc} ({self.shown_url})", streamed=acc.tokens) from exc
        except lean_http.ConnectError as exc:  # nothing listening: the engine was gone before this request
            raise EngineError("connect", f"ConnectError: {exc}") from exc
        except lean_http.HTTPError as exc:
            raise EngineError("connection", f"{type(exc).__name__}: {exc}", streamed=acc.tokens) from exc

    async def _continuation_prompt(self, request: GenerationRequest) -> tuple[list[int], int | None]:
        """Token ids of the rendered chat prompt (known from an earlier segment, else from the server's
        tokenizer) followed by the prefix's ids (as the engine generated them; tokenized again only when
        the engine sent none), and the room left in the model's context after them (None: unstated)."""
        max_len = self._context.get(request.model)
        if request.model not in self._context:  # asked once, off the loop
            max_len = await self.looper.guarded(self.context_length, request.model)
        if request.prompt_ids is not None:
            rendered = list(request.prompt_ids)
        else:
            rendered, stated = await self._tokenize(
                {"model": request.model, "messages": request.messages, "add_generation_prompt": True}
            )
            max_len = stated or max_len
        if request.prefix_ids is not None:
            prefix = list(request.prefix_ids)
        else:
            prefix, _ = await self._tokenize(
                {"model": request.model, "prompt": request.prefix, "add_special_tokens": False}
            )
        prompt = rendered + prefix
        return prompt, None if max_len is None else max(0, max_len - len(prompt))

    async def _tokenize(self, body: dict[str, Any]) -> tuple[list[int], int]:
        try:
            response = await self.client.post("/tokenize", json=body, timeout=60.0)
        except lean_http.HTTPError as exc:
            raise EngineError("connection", f"/tokenize: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (404, 405):
            raise CannotContinue(f"the engine at {self.shown_url} has no /tokenize endpoint")
        if response.status_code >= 400:
            raise EngineError("http", await _error_message(response), response.status_code)
        answer = response.json()
        return [int(t) for t in answer["tokens"]], int(answer["max_model_len"])

    def close(self) -> None:
        self.looper.call(self.client.aclose(), timeout=10.0)
        self.looper.stop()
        self.control.close()


class Lines(Protocol):
    """A streamed response body, as lines (`worker.lean_http.Response`; tests also give httpx's)."""

    def aiter_lines(self) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class Patience:
    """How long a stream may go without a token: before its first (requests may queue) and after."""

    first_token: float = 1800.0
    idle: float = 300.0


async def _follow(
    response: Lines, acc: StreamAccumulator, guard: AsyncGuard | None, patience: Patience
) -> None:
    """Read the stream into `acc`, asking the guard after every line whether to go on (so that cancel
    and drain act on a stream of keep-alives too). Only a chunk with tokens is progress: a stream of
    keep-alive comments times out like a silent one."""
    started = last = time.monotonic()
    lines = response.aiter_lines()
    async for event in sse_events(lines):
        now = time.monotonic()
        if event is not None:
            if "error" in event:
                raise EngineError("stream", str(event["error"]), streamed=acc.tokens)
            before = acc.tokens
            acc.add(event)
            if acc.tokens > before or acc.finish_reason is not None:
                last = now
        waited, limit = (now - last, patience.idle) if acc.tokens else (now - started, patience.first_token)
        if acc.finish_reason is None and waited > limit:
            what = "new token" if acc.tokens else "first token"
            raise EngineError(
                "timeout", f"no {what} for {waited:.0f} s (keep-alives do not count)", streamed=acc.tokens
            )
        if (
            acc.finish_reason is None
            and guard is not None
            and not await guard(acc.take_raw(), acc.tokens, acc.take_ids())
        ):
            acc.finish_reason = BUDGET  # closing the stream aborts the request in vLLM
            return
    await _drain(lines)


async def _drain(lines: AsyncIterator[str], most: int = 16) -> None:
    """Read what follows `data: [DONE]` (the end of the chunked body), so that the connection goes back
    to the pool for the next request: a response closed before its end closes its connection, and every
    request would pay a new TCP connection (and the engine's server a new one). An engine that goes on
    past [DONE] is left after `most` lines (its connection closed)."""
    n = 0
    async for _ in lines:
        n += 1
        if n >= most:
            return


async def _error_message(response: lean_http.Response) -> str:
    body = (await response.aread()).decode("utf-8", "replace")
    try:
        error = json.loads(body).get("error", body)
        message = error.get("message", body) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = body
    return f"HTTP {response.status_code}: {message[:2000]}"
