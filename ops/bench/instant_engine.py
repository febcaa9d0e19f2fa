"""A minimal OpenAI-compatible engine for the control-plane benchmarks (benchmark code, not product
code): it answers every chat completion at once with a short fixed stream (reasoning, `</think>`, a
boxed answer, usage), so what is measured is pacore, not generation. It records when each request
arrived and its last message (`GET /bench/arrivals`: a list of [wall time, content])."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "instant"
CHUNKS = [{"reasoning": "think"}, {"content": " The answer is \\boxed{7}."}]


class InstantEngine:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []  # (wall time, last user message)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # as vLLM's server (uvicorn) does: without it, each small write of the stream waits for the
            # client's delayed ACK (up to 40 ms a generation on Linux), which is Nagle's, not pacore's
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json({"data": [{"id": MODEL}]})
                elif self.path == "/bench/arrivals":  # for a benchmark that runs this as a process
                    with engine.lock:
                        self._json(engine.arrivals)
                else:
                    self._json({})

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with engine.lock:
                    engine.arrivals.append((time.time(), request["messages"][-1]["content"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for n, delta in enumerate([*CHUNKS, {}], start=1):
                    finish = "stop" if n > len(CHUNKS) else None
                    event = {
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": min(n, len(CHUNKS) + 1)},
                    }
                    self._chunk(f"data: {json.dumps(event)}\n\n")
                self._chunk("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            def _json(self, obj: Any) -> None:
                payload = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def main() -> None:
    """Serve on its own (a process of its own, pinned to its own core by the caller): prints its URL."""
    import argparse

    parser = argparse.ArgumentParser(description="the instant engine, as a process of its own")
    parser.parse_args()
    engine = InstantEngine()
    print(engine.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
