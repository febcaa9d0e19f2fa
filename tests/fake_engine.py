"""A small real OpenAI-compatible HTTP server for integration tests: streams scripted chat completions
in chunks of the request's `stream_interval` tokens (words; one by default), each with the running usage
when `continuous_usage_stats` is asked for, as vLLM does. Not a mock of anything pacore owns: it
is the other side of the engine seam, over real HTTP.

What it does is chosen by markers in the problem text (the last user message of round 1 and, through
the synthesis prompt that quotes it, of later rounds). `nth` counts requests per distinct text.

- `FAIL500`: every request fails with HTTP 500.      - `FAILHALF`: every second request fails (500).
- `FLAKY500`: the first request fails with 500.       - `RATE429`: the first request gets 429.
- `HANG`: the first request sends nothing for 5 s.    - `DROP`: the first request's stream is cut after 3 tokens.
- `BAD400`: every request fails with a 400 that no retry can fix.
- `CONTEXT<n>`: a context of n tokens: a larger max_tokens gets vLLM's context-length error (400).
- `SLOW<ms>`: each request takes that long.           - `LONG<n>`: the reasoning is n tokens (default 2).
- `NOCONT`: no /tokenize: a checkpoint cannot be continued.
- `FAILWHILE`: every request fails with HTTP 500 while `failing` is set.
- `PACE<ms>`: each token takes that long (a chunk of n tokens comes after n times that).
- `CRASH`: while `crashes` is set, the engine dies (see `go_down`) after the 3rd token of the request (the 1st of a continuation).
- `MALFORMED`: the stream sends a data line that is not JSON.  - `NULLCHOICE`: a chunk with `choices: [null]`.
- `KEEPALIVE`: the stream sends only keep-alive comments (every 50 ms, for at most 20 s), never a token.
- `SILENT`: the response's headers, then nothing; `STALL`: nothing at all, not even headers. Both until
  the client goes (or 60 s); `streaming` counts them while they last.
- `FAILFIRST<n>`: the first n requests fail with HTTP 500.
- `MERGE<n>`: n tokens per chunk (vLLM merges tokens for a slow reader); never past max_tokens.

Otherwise: reasoning `thinking w w ...` and content ` The answer is \\boxed{<request number>}.`; the
completion tokens are the reasoning words + 4 + 1 (end of sequence), cut at max_tokens.

Continuations (the next segment, or a checkpoint resumed) work as in vLLM: `/tokenize` renders the chat
(here: one token naming it, then a 0) or tokenizes text (one token per character); `/v1/completions` takes those ids
and continues the same script after the prefix, streaming raw `text` with `</think>` in it. With
`return_token_ids` (as vLLM >= 0.10.2) the chat stream's first chunk carries the rendered prompt's ids
and every chunk its token's id (script piece k is `TOKEN_BASE + k`, the end of sequence `EOS`); a prompt
that ends in such ids continues after that many pieces. `NOIDS` in the text: no ids are sent, and no
`stream_interval` is honoured (a server older than both: a token per chunk).
`generated` counts every token streamed, as vLLM's `generation_tokens_total` does.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS_PER_WORD = 1
MAX_MODEL_LEN = 4096  # the context length /v1/models and /tokenize state
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # vLLM's (and OpenAI's) default on /v1/completions
TOKEN_BASE, EOS = 1_000_000, 999_999  # ids of the script's pieces (above any character of a rendered chat)


class Server(ThreadingHTTPServer):
    """Accepts as many connections at once as vLLM's server does (uvicorn's backlog, 2048), not
    socketserver's 5: a worker opens a connection per generation slot, all at once."""

    request_queue_size = 2048


class FakeEngine:
    def __init__(self, model: str = "fake-model", api_key: str | None = None) -> None:
        self.model = model
        self.api_key = api_key  # when set, requests must carry it (vllm serve --api-key)
        self.requests: list[dict[str, Any]] = []
        self.peers: list[tuple[str, int]] = []  # the client's address of each POST (its connection)
        self.posted: list[tuple[float, str]] = []  # when each POST arrived, and its last message's text
        self.first_tokens: list[tuple[float, str]] = []  # when each stream's first token was sent, its text
        self.per_text: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.crashes = True
        self.failing = True  # FAILWHILE requests fail while this is set
        self.streaming = 0  # streams in progress
        self.generated = 0  # tokens streamed, all requests
        self.generated_by: Counter[str] = Counter()  # and by the request's last message
        self.rendered: dict[str, int] = {}  # chats rendered by /tokenize or a chat request, and their token
        self.server = self._listen(0)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = Server(("127.0.0.1", port), self._handler())
        server.daemon_threads = True
        return server

    def __enter__(self) -> FakeEngine:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def go_down(self, seconds: float) -> None:
        """The engine process dies for `seconds`: new connections are refused, streams in flight break."""
        with self.lock:
            if self.is_down():
                return
            self.down_until = time.monotonic() + seconds
            old = self.server
        threading.Thread(target=self._restart, args=(old, seconds), daemon=True).start()

    def _restart(self, old: ThreadingHTTPServer, seconds: float) -> None:
        old.shutdown()
        old.server_close()
        time.sleep(max(0.0, self.down_until - time.monotonic()))
        self.server = self._listen(self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def authorized(self, headers: Any) -> bool:
        return not self.api_key or headers.get("Authorization") == f"Bearer {self.api_key}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as vLLM's server: each chunk leaves at once, no delayed-ACK wait

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if engine.is_down():  # dead: the old server may still be closing; it answers nothing
                    self.close_connection = True
                    return
                if self.path.startswith("/v1") and not engine.authorized(self.headers):
                    self.send_json(401, {"error": "Unauthorized"})
                    return
                if self.path == "/health":
                    self.send_json(200, {})
                elif self.path == "/v1/models":
                    self.send_json(200, {"data": [{"id": engine.model, "max_model_len": MAX_MODEL_LEN}]})
                else:
                    self.send_json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with engine.lock:
                    engine.peers.append(self.client_address)
                    text = (body.get("messages") or [{}])[-1].get("content", "")
                    engine.posted.append((time.monotonic(), text if isinstance(text, str) else ""))
                # A client that stops reading (a refused budget block) aborts the request, as in vLLM; a
                # dying engine breaks the stream (the connection closes mid-body).
                try:
                    engine.post(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def send_json(self, status: int, obj: Any) -> None:
                payload = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def post(self, handler: Any, body: dict[str, Any]) -> None:
        if self.is_down():
            handler.close_connection = True
            return
        if not self.authorized(handler.headers):
            handler.send_json(401, {"error": "Unauthorized"})
        elif handler.path == "/tokenize" and "NOCONT" in json.dumps(body):
            handler.send_json(404, {"detail": "Not Found"})
        elif handler.path == "/tokenize":
            tokens = self.tokenize(body)
            handler.send_json(200, {"tokens": tokens, "count": len(tokens), "max_model_len": MAX_MODEL_LEN})
        else:
            self.handle(handler, body)

    def tokenize(self, body: dict[str, Any]) -> list[int]:
        """A chat renders as one token naming it, then a 0 (short, like a real prompt, and reversible);
        text as one token per character."""
        if "messages" in body:
            rendered = json.dumps(body["messages"])
            with self.lock:
                n = self.rendered.setdefault(rendered, len(self.rendered) + 1)
            return [n, 0]
        return [ord(c) for c in body["prompt"]]

    def messages_of(self, n: int) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(next(r for r, k in self.rendered.items() if k == n))

    def handle(self, handler: Any, body: dict[str, Any]) -> None:
        prefix: str | int = ""
        rendered: list[int] | None = None
        if "prompt" in body:  # a continuation: the rendered chat, then the prefix (as ids, or as text)
            ids = body["prompt"]
            cut = ids.index(0)
            rendered = ids[: cut + 1]
            body = {**body, "messages": self.messages_of(ids[0])}
            rest = ids[cut + 1 :]
            if rest and all(t >= TOKEN_BASE for t in rest):
                assert rest == [TOKEN_BASE + k for k in range(len(rest))], "the ids this engine generated"
                prefix = len(rest)
            else:
                prefix = "".join(map(chr, rest))
        text = body["messages"][-1]["content"]
        with self.lock:
            self.requests.append(body)
            self.per_text[text] += 1
            n, nth = len(self.requests), self.per_text[text]
        prompt = sum(len(m["content"].split()) for m in body["messages"]) * PROMPT_TOKENS_PER_WORD
        if slow := re.search(r"SLOW(\d+)", text):
            time.sleep(int(slow.group(1)) / 1000)
        if failure := self._failure(text, nth, body, prompt):
            status, message = failure
            handler.send_json(status, {"error": {"message": message, "type": "Error", "code": status}})
            return
        if "HANG" in text and nth == 1:
            time.sleep(5)
        if misbehaviour := next((m for m in ("MALFORMED", "NULLCHOICE", "KEEPALIVE") if m in text), None):
            self.misbehave(handler, misbehaviour)
            return
        if hung := next((m for m in ("SILENT", "STALL") if m in text), None):
            self.hang(handler, headers=hung == "SILENT")
            return
        long = re.search(r"LONG(\d+)", text)
        reasoning = ["thinking"] + ["w"] * (int(long.group(1)) - 1 if long else 1)
        content = [" The", " answer", " is", f" \\boxed{{{n}}}."]
        pace = re.search(r"PACE(\d+)", text)
        crash = "CRASH" in text and self.crashes
        ids = body.get("return_token_ids") and "NOIDS" not in text
        merged = re.search(r"MERGE(\d+)", text)
        # a server that sends no token ids is older than vLLM's per-request stream_interval too
        interval = int(body.get("stream_interval") or 1) if ids else 1
        self.stream(
            handler,
            prompt,
            reasoning,
            content,
            body.get("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS if "prompt" in body else None),
            cut=3 if "DROP" in text and nth == 1 else None,
            crash_after=(1 if "prompt" in body else 3) if crash else None,  # a continuation crashes too
            pace=int(pace.group(1)) / 1000 if pace else 0.0,
            prefix=prefix if "prompt" in body else None,
            prompt_ids=(rendered or self.tokenize(body)) if ids else None,
            merge=int(merged.group(1)) if merged else interval,
            tag=text,
            continuous=bool((body.get("stream_options") or {}).get("continuous_usage_stats")),
        )

    def _failure(self, text: str, nth: int, body: dict[str, Any], prompt: int) -> tuple[int, str] | None:
        if "FAILWHILE" in text and self.failing:
            return 500, "scripted internal error (until the switch is turned off)"
        if "FAIL500" in text or ("FAILHALF" in text and nth % 2 == 0) or ("FLAKY500" in text and nth == 1):
            return 500, "scripted internal error"
        if (first := re.search(r"FAILFIRST(\d+)", text)) and nth <= int(first.group(1)):
            return 500, f"scripted internal error (request {nth} of the first {first.group(1)})"
        if "RATE429" in text and nth == 1:
            return 429, "scripted rate limit"
        if "BAD400" in text:
            return 400, "scripted bad request: top_p must be in (0, 1]"
        context = re.search(r"CONTEXT(\d+)", text)
        if context and (body.get("max_tokens") or 10**9) + prompt > int(context.group(1)):
            limit, asked = int(context.group(1)), body.get("max_tokens") or 10**9
            return 400, (
                f"This model's maximum context length is {limit} tokens. However, you requested {asked + prompt} "
                f"tokens ({prompt} in the messages, {asked} in the completion). Please reduce the length of the "
                "messages or completion."
            )
        return None

    def stream(
        self,
        handler: Any,
        prompt: int,
        reasoning: list[str],
        content: list[str],
        max_tokens: int | None,
        cut: int | None,
        pace: float = 0.0,
        prefix: str | int | None = None,
        crash_after: int | None = None,
        prompt_ids: list[int] | None = None,
        merge: int = 1,
        tag: str = "",
        continuous: bool = True,
    ) -> None:
        pieces: list[dict[str, Any]] = [
            {"reasoning": (" " if i else "") + w} for i, w in enumerate(reasoning)
        ] + [{"content": c} for c in content]
        for k, piece in enumerate(pieces):
            piece["id"] = TOKEN_BASE + k
        if prefix is not None:  # raw completions: the script's text after the prefix
            raw = [p.get("reasoning") or p["content"] for p in pieces]
            raw[len(reasoning)] = "</think>" + raw[len(reasoning)]
            done = (
                prefix
                if isinstance(prefix, int)
                else next(k for k in range(len(raw) + 1) if "".join(raw[:k]) == prefix)
            )
            pieces = [{"text": r, "id": p["id"]} for r, p in zip(raw, pieces, strict=True)][done:]
        with self.lock:
            self.streaming += 1
        try:
            self._stream(
                handler,
                prompt,
                pieces,
                max_tokens,
                cut,
                pace,
                crash_after,
                prompt_ids,
                merge,
                tag,
                continuous,
            )
        finally:
            with self.lock:
                self.streaming -= 1

    def _stream(
        self,
        handler: Any,
        prompt: int,
        pieces: list[dict[str, str]],
        max_tokens: int | None,
        cut: int | None,
        pace: float,
        crash_after: int | None,
        prompt_ids: list[int] | None = None,
        merge: int = 1,
        tag: str = "",
        continuous: bool = True,
    ) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        ids = prompt_ids is not None
        if ids and pieces and "text" not in pieces[0]:  # the chat API's first chunk: the rendered prompt
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            self._chunk(handler, {"choices": [first], "prompt_token_ids": prompt_ids})
        limit = len(pieces) if max_tokens is None else min(len(pieces), max_tokens)
        count = 0
        # a chunk never spans the point where the stream is cut or the engine crashes
        edge = cut if cut is not None else crash_after
        head = pieces[:limit]
        groups = (
            _groups(head, merge)
            if edge is None
            else _groups(head[:edge], merge) + _groups(head[edge:], merge)
        )
        for group in groups:
            time.sleep(pace * len(group))  # a chunk of n tokens comes after n tokens' time
            if crash_after is not None and count + 1 > crash_after:
                self.go_down(3.0)
            if self.is_down():
                raise ConnectionResetError("the engine died")  # the stream breaks mid-body
            if cut is not None and count + 1 > cut:
                handler.wfile.write(b"0\r\n\r\n")  # the stream ends early: no finish reason, no [DONE]
                return
            count += len(group)
            usage = {"prompt_tokens": prompt, "completion_tokens": count}
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            if "text" in group[0]:
                choice["text"] = "".join(p["text"] for p in group)
            else:  # as vLLM's reasoning parser: a chunk across `</think>` has both
                parts = {k: [p[k] for p in group if k in p] for k in ("reasoning", "content")}
                choice["delta"] = {k: "".join(v) for k, v in parts.items() if v}
            if ids:
                choice["token_ids"] = [p["id"] for p in group]
                if count == len(group) and "text" in group[0]:  # the completions API: the prompt's ids first
                    choice["prompt_token_ids"] = prompt_ids
            self._count(tag, len(group), first=count == len(group))
            self._chunk(handler, {"choices": [choice], **({"usage": usage} if continuous else {})})
        if max_tokens is not None and len(pieces) >= max_tokens:
            self._finish(handler, "length", usage, [] if ids else None)
            return
        usage = {"prompt_tokens": prompt, "completion_tokens": count + 1}  # + the end-of-sequence token
        self._count(tag, 1)
        self._finish(handler, "stop", usage, [EOS] if ids else None)

    def _count(self, tag: str, tokens: int, first: bool = False) -> None:
        """Count tokens about to be sent; `first`: a stream's first (its time is kept in first_tokens)."""
        with self.lock:
            self.generated += tokens
            self.generated_by[tag] += tokens
            if first:
                self.first_tokens.append((time.monotonic(), tag))

    def misbehave(self, handler: Any, how: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        self._chunk(handler, {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        if how == "MALFORMED":
            self._raw(handler, b"data: {this is not json\n\n")
        elif how == "NULLCHOICE":
            self._chunk(handler, {"choices": [None]})
        else:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                self._raw(handler, b": keepalive\n\n")
                time.sleep(0.05)
        handler.wfile.write(b"0\r\n\r\n")

    def hang(self, handler: Any, headers: bool) -> None:
        """Send nothing (after the headers, or not even those) until the client goes, or for 60 s."""
        with self.lock:
            self.streaming += 1
        try:
            if headers:
                handler.send_response(200)
                handler.send_header("Content-Type", "text/event-stream")
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                handler.wfile.flush()
            connection = handler.connection
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                readable, _, _ = select.select([connection], [], [], 0.1)
                if readable and not connection.recv(1, socket.MSG_PEEK):
                    break  # the client closed (or cut) the connection
        finally:
            with self.lock:
                self.streaming -= 1
        handler.close_connection = True

    @staticmethod
    def _raw(handler: Any, data: bytes) -> None:
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()

    def _finish(self, handler: Any, reason: str, usage: dict[str, int], ids: list[int] | None) -> None:
        last: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": reason}
        if ids is not None:
            last["token_ids"] = ids
        self._chunk(handler, {"choices": [last], "usage": usage})
        self._chunk(handler, {"choices": [], "usage": usage})
        handler.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")

    @staticmethod
    def _chunk(handler: Any, obj: dict[str, Any]) -> None:
        data = f"data: {json.dumps(obj)}\n\n".encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _groups(pieces: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Consecutive pieces, at most `size` to a chunk."""
    return [pieces[i : i + size] for i in range(0, len(pieces), size)]
