"""The engine seam: vLLM's OpenAI-compatible server over HTTP, streamed.

The HTTP client does no retrying of its own, so that retry policy lives in one place (tenacity at the
task edge, with the budgets issue). The client is shared by all generation threads of a process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, Any]]
    model: str
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class GenerationResult:
    content: str
    reasoning: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


class EngineError(Exception):
    """The engine could not produce a generation; `kind` says why (http, connection, timeout, stream).
    `streamed` is how many tokens arrived before it failed: spent, though not kept."""

    def __init__(self, kind: str, message: str, status: int | None = None, streamed: int = 0) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.status = status
        self.streamed = streamed


# Called with the tokens streamed so far; False stops the stream there (finish reason `budget`).
Guard = Callable[[int], bool]
BUDGET = "budget"


def refused_before_start() -> GenerationResult:
    return GenerationResult("", None, BUDGET, 0, 0)


class Engine(Protocol):
    def generate(self, request: GenerationRequest, guard: Guard | None = None) -> GenerationResult: ...

    def close(self) -> None: ...


def request_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stream": True,
        # continuous_usage_stats: every chunk carries the running count, so a dropped stream still has one.
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.seed is not None:
        body["seed"] = request.seed
    return body


class StreamAccumulator:
    """Folds streamed chat-completion chunks into one result. Reasoning arrives as `reasoning` (current
    vLLM) or `reasoning_content` (older servers)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.saw_reasoning = False
        self.finish_reason: str | None = None
        self.usage: dict[str, int] = {}

        self.deltas = 0

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            piece = delta.get("reasoning", delta.get("reasoning_content"))
            if piece is not None:
                self.saw_reasoning = True
                self.reasoning.append(piece)
                self.deltas += 1
            if delta.get("content"):
                self.content.append(delta["content"])
                self.deltas += 1
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    @property
    def tokens(self) -> int:
        """Tokens so far: the server's continuous count, else one per delta received."""
        return int(self.usage["completion_tokens"]) if "completion_tokens" in self.usage else self.deltas

    def result(self) -> GenerationResult:
        return GenerationResult(
            content="".join(self.content),
            reasoning="".join(self.reasoning) if self.saw_reasoning else None,
            finish_reason=self.finish_reason,
            prompt_tokens=int(self.usage.get("prompt_tokens", 0)),
            completion_tokens=self.tokens,
        )


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


class OpenAIEngine:
    def __init__(
        self, base_url: str, api_key: str | None = None, timeout: float = 600.0, pool: int = 256
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            transport=httpx.HTTPTransport(retries=0),
        )

    def health(self) -> bool:
        try:
            return self.client.get("/health", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def served_models(self) -> list[str]:
        response = self.client.get("/v1/models", timeout=10.0)
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]

    def generate(self, request: GenerationRequest, guard: Guard | None = None) -> GenerationResult:
        if guard is not None and not guard(0):
            return refused_before_start()
        acc = StreamAccumulator()
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=request_body(request)) as response:
                if response.status_code >= 400:
                    raise EngineError("http", _error_message(response), response.status_code)
                for event in sse_events(response.iter_lines()):
                    if "error" in event:
                        raise EngineError("stream", str(event["error"]), streamed=acc.tokens)
                    acc.add(event)
                    if acc.finish_reason is None and guard is not None and not guard(acc.tokens):
                        acc.finish_reason = BUDGET  # closing the stream aborts the request in vLLM
                        break
        except httpx.TimeoutException as exc:
            raise EngineError(
                "timeout", f"{type(exc).__name__} from {self.base_url}", streamed=acc.tokens
            ) from exc
        except httpx.HTTPError as exc:
            raise EngineError("connection", f"{type(exc).__name__}: {exc}", streamed=acc.tokens) from exc
        if acc.finish_reason is None:
            raise EngineError("stream", "the stream ended without a finish reason", streamed=acc.tokens)
        return acc.result()

    def close(self) -> None:
        self.client.close()


def _error_message(response: httpx.Response) -> str:
    body = response.read().decode("utf-8", "replace")
    try:
        error = json.loads(body).get("error", body)
        message = error.get("message", body) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = body
    return f"HTTP {response.status_code}: {message[:2000]}"
