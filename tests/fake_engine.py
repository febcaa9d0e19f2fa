"""A small real OpenAI-compatible HTTP server for integration tests: streams scripted chat completions,
one token (word) per chunk with continuous usage, as vLLM does. Not a mock of anything pacore owns: it
is the other side of the engine seam, over real HTTP.

What it does is chosen by markers in the problem text (the last user message of round 1 and, through
the synthesis prompt that quotes it, of later rounds). `nth` counts requests per distinct text.

- `FAIL500`: every request fails with HTTP 500.      - `FAILHALF`: every second request fails (500).
- `FLAKY500`: the first request fails with 500.       - `RATE429`: the first request gets 429.
- `HANG`: the first request sends nothing for 5 s.    - `DROP`: the first request's stream is cut after 3 tokens.
- `BAD400`: every request fails with a 400 that no retry can fix.
- `CONTEXT<n>`: a context of n tokens: a larger max_tokens gets vLLM's context-length error (400).
- `SLOW<ms>`: each request takes that long.           - `LONG<n>`: the reasoning is n tokens (default 2).

Otherwise: reasoning `thinking w w ...` and content ` The answer is \\boxed{<request number>}.`; the
completion tokens are the reasoning words + 4 + 1 (end of sequence), cut at max_tokens.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS_PER_WORD = 1


class FakeEngine:
    def __init__(self, model: str = "fake-model") -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.per_text: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/health":
                    self.send_json(200, {})
                elif self.path == "/v1/models":
                    self.send_json(200, {"data": [{"id": engine.model, "max_model_len": 4096}]})
                else:
                    self.send_json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                # A client that stops reading (a refused budget block) aborts the request, as in vLLM.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    engine.handle(self, body)

            def send_json(self, status: int, obj: Any) -> None:
                payload = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def handle(self, handler: Any, body: dict[str, Any]) -> None:
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
        long = re.search(r"LONG(\d+)", text)
        reasoning = ["thinking"] + ["w"] * (int(long.group(1)) - 1 if long else 1)
        content = [" The", " answer", " is", f" \\boxed{{{n}}}."]
        self.stream(
            handler,
            prompt,
            reasoning,
            content,
            body.get("max_tokens"),
            cut=3 if "DROP" in text and nth == 1 else None,
        )

    @staticmethod
    def _failure(text: str, nth: int, body: dict[str, Any], prompt: int) -> tuple[int, str] | None:
        if "FAIL500" in text or ("FAILHALF" in text and nth % 2 == 0) or ("FLAKY500" in text and nth == 1):
            return 500, "scripted internal error"
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
    ) -> None:
        pieces = [{"reasoning": (" " if i else "") + w} for i, w in enumerate(reasoning)] + [
            {"content": c} for c in content
        ]
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for count, piece in enumerate(pieces, start=1):
            if cut is not None and count > cut:
                handler.wfile.write(b"0\r\n\r\n")  # the stream ends early: no finish reason, no [DONE]
                return
            usage = {"prompt_tokens": prompt, "completion_tokens": count}
            self._chunk(
                handler, {"choices": [{"index": 0, "delta": piece, "finish_reason": None}], "usage": usage}
            )
            if max_tokens is not None and count >= max_tokens:
                self._finish(handler, "length", usage)
                return
        usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces) + 1}  # + the end-of-sequence token
        self._finish(handler, "stop", usage)

    def _finish(self, handler: Any, reason: str, usage: dict[str, int]) -> None:
        self._chunk(
            handler, {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}], "usage": usage}
        )
        self._chunk(handler, {"choices": [], "usage": usage})
        handler.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")

    @staticmethod
    def _chunk(handler: Any, obj: dict[str, Any]) -> None:
        data = f"data: {json.dumps(obj)}\n\n".encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
