"""The worker's lean HTTP/1.1 client (worker/lean_http.py) against real sockets: a server in the test
writes exact bytes, so every expected value is what the server sent, not what the client computes."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

import pytest

from worker import lean_http

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    line, *rest = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def serve(handler: Handler, test: Callable[[str, list[int]], Awaitable[None]]) -> list[int]:
    """Run `test(url, connections)` against a server calling `handler(reader, writer, connection number)`
    per connection; returns the connections' numbers in the order they came."""
    connections: list[int] = []

    async def main() -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(len(connections))
            try:
                await handler(reader, writer, connections[-1])
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await test(f"http://127.0.0.1:{port}", connections)

    asyncio.run(main())
    return connections


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.01)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def keep_alive_sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
    """Answers every request on the connection with the same SSE body, chunked; `é` split in two."""
    while True:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(chunked(b'data: {"a": "caf\xc3', b'\xa9"}\r\n\r\n', b"data: [DONE]\n\n"))
        await writer.drain()


def test_a_chunked_stream_comes_as_lines_and_its_connection_serves_the_next_request() -> None:
    async def test(url: str, connections: list[int]) -> None:
        client = lean_http.AsyncClient(url)
        for _ in range(3):
            async with client.stream("POST", "/v1/chat/completions", json={"x": 1}) as response:
                assert response.status_code == 200
                lines = [line async for line in response.aiter_lines()]
            assert lines == ['data: {"a": "café"}', "", "data: [DONE]", ""]
        assert client.connections_opened == 1 and connections == [0]
        await client.aclose()

    serve(keep_alive_sse, test)


def test_a_stream_left_early_closes_its_connection_and_the_server_sees_it_go() -> None:
    gone = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(chunked(b"data: {}\n\n")[:-5])  # a chunk, never the last one
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            gone.set()

    async def test(url: str, connections: list[int]) -> None:
        client = lean_http.AsyncClient(url)
        async with client.stream("POST", "/v1/completions", json={}) as response:
            async for line in response.aiter_lines():
                assert line == "data: {}"
                break
        await asyncio.wait_for(gone.wait(), 10)
        assert not client.idle  # not pooled: it was closed
        await client.aclose()

    serve(endless, test)


def test_a_json_answer_by_content_length_and_the_request_as_sent() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def tokenize(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            seen.append(await read_request(reader))
            body = b'{"tokens": [1, 2, 3], "max_model_len": 40960}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async def test(url: str, connections: list[int]) -> None:
        client = lean_http.AsyncClient(url + "/prefix", {"Authorization": "Bearer k"})
        response = await client.post("/tokenize", json={"prompt": "ab"})
        assert response.json() == {"tokens": [1, 2, 3], "max_model_len": 40960}
        await client.post("/tokenize", json={"prompt": "cd"})
        assert connections == [0]
        await client.aclose()

    serve(tokenize, test)
    (line, headers, body), _ = seen
    assert line == "POST /prefix/tokenize HTTP/1.1"
    assert headers["authorization"] == "Bearer k" and headers["content-type"] == "application/json"
    assert headers["host"].startswith("127.0.0.1:")
    assert json.loads(body) == {"prompt": "ab"}


def test_credentials_in_the_url_go_as_basic_authentication_and_a_204_has_no_body() -> None:
    seen: list[dict[str, str]] = []

    async def no_content(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            seen.append((await read_request(reader))[1])
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no body, whatever its headers say

    async def test(url: str, connections: list[int]) -> None:
        client = lean_http.AsyncClient(url.replace("http://", "http://ann:s%40cret@"), timeout=5)
        assert (await client.post("/x")).status_code == 204
        assert (await client.post("/x")).status_code == 204
        assert connections == [0]

    serve(no_content, test)
    assert seen[0]["authorization"] == "Basic YW5uOnNAY3JldA=="  # base64 of "ann:s@cret"
    assert seen[0]["host"].startswith("127.0.0.1:")


def test_connection_close_and_a_kept_alive_connection_the_server_closed_both_get_a_new_one() -> None:
    async def close_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        closing = b"connection: close\r\n" if n == 0 else b""
        writer.write(b"HTTP/1.1 200 OK\r\n%scontent-length: 2\r\n\r\nok" % closing)
        await writer.drain()
        # connection 1 is kept alive by its answer, then closed by the server while idle (vLLM after 5 s)

    async def test(url: str, connections: list[int]) -> None:
        client = lean_http.AsyncClient(url)
        assert (await client.post("/x")).content == b"ok"
        assert not client.idle  # its answer said close
        assert (await client.post("/x")).content == b"ok"
        (kept,) = client.idle
        await until(lambda: not kept.usable())  # the loop reads the server's close of the idle one
        assert (await client.post("/x")).content == b"ok"
        assert connections == [0, 1, 2] and client.connections_opened == 3

    serve(close_after, test)


def test_a_reused_connection_closed_as_the_request_went_out_is_sent_again_on_a_new_one() -> None:
    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        if n == 0:  # the next request on this connection: read, then closed without an answer
            await read_request(reader)

    async def test(url: str, connections: list[int]) -> None:
        client = lean_http.AsyncClient(url)
        assert (await client.post("/x")).content == b"ok"
        assert (await client.post("/x")).content == b"ok"
        assert connections == [0, 1]

    serve(drop_second, test)


def test_failures_come_as_the_client_s_errors() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]

    async def misbehaving(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")  # then nothing
        elif n == 1:
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")  # not HTTP
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")  # then closed, 7 bytes short
        await writer.drain()
        if n < 2:
            await asyncio.sleep(2)  # the connection stays open, silent, past the client's timeout

    async def test(url: str, connections: list[int]) -> None:
        with pytest.raises(lean_http.ConnectError):
            await lean_http.AsyncClient(f"http://127.0.0.1:{closed_port}").post("/x")
        client = lean_http.AsyncClient(url, timeout=0.3)
        with pytest.raises(lean_http.Timeout):
            async with client.stream("POST", "/x") as response:
                [line async for line in response.aiter_lines()]
        with pytest.raises(lean_http.ReadError, match="not HTTP"):
            await client.post("/x")
        short = lean_http.AsyncClient(url, timeout=5)
        with pytest.raises(lean_http.ReadError, match="7 bytes before the body's end"):
            await short.post("/x")

    serve(misbehaving, test)
