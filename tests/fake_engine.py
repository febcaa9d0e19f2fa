"""A small real OpenAI-compatible HTTP server for integration tests: streams scripted chat completions.

Not a mock of anything pacore owns: it is the other side of the engine seam, over real HTTP. What it does
is chosen by markers in the problem text (the last user message of round 1 and, through the synthesis
prompt that quotes it, of later rounds):

- `FAIL500`: every request fails with HTTP 500.
- `FAILHALF`: every second request for that text fails with HTTP 500.
- `SLOW<ms>`: each request takes that many milliseconds.
- otherwise: reasoning "thinking <n>" and content " The answer is \\boxed{<n>}." with n = a request counter.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
                    self._send(200, b"")
                elif self.path == "/v1/models":
                    self._json(200, {"data": [{"id": engine.model, "max_model_len": 4096}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                engine.handle(self, body)

            def _send(self, status: int, payload: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _json(self, status: int, obj: Any) -> None:
                self._send(status, json.dumps(obj).encode(), "application/json")

        return Handler

    def handle(self, handler: Any, body: dict[str, Any]) -> None:
        text = body["messages"][-1]["content"]
        with self.lock:
            self.requests.append(body)
            self.per_text[text] += 1
            n = len(self.requests)
            nth_for_text = self.per_text[text]
        slow = re.search(r"SLOW(\d+)", text)
        if slow:
            time.sleep(int(slow.group(1)) / 1000)
        if "FAIL500" in text or ("FAILHALF" in text and nth_for_text % 2 == 0):
            handler._json(
                500, {"error": {"message": "scripted internal error", "type": "InternalServerError"}}
            )
            return
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        self.stream(handler, prompt, f"thinking {n}", f" The answer is \\boxed{{{n}}}.")

    def stream(self, handler: Any, prompt: int, reasoning: str, content: str) -> None:
        """Token counts are words here: what matters is that pacore stores what the server reports."""
        pieces = [{"reasoning": reasoning}, {"content": content}]
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        completion = 0
        for piece in pieces:
            completion += len(next(iter(piece.values())).split())
            self._chunk(
                handler,
                {
                    "choices": [{"index": 0, "delta": piece, "finish_reason": None}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
                },
            )
        completion += 1  # the end-of-sequence token, as vLLM counts it
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        self._chunk(
            handler, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        )
        self._chunk(handler, {"choices": [], "usage": usage})
        handler.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")

    @staticmethod
    def _chunk(handler: Any, obj: dict[str, Any]) -> None:
        data = f"data: {json.dumps(obj)}\n\n".encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
