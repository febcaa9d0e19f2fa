"""A lean HTTP/1.1 client on asyncio streams, for the worker's generations (issue #16: CPU per trajectory).

Every generation is one POST to the engine and one streamed response. Through httpx's asyncio path each
request cost the worker more CPU than all its database work (measured with an engine that answers at
once: half of a worker's event loop went to httpx, httpcore and anyio, among them a failed
`import sniffio` per request and a socket poll per pooled connection reused). This client does only
what the engine's OpenAI-compatible server needs: a JSON POST with keep-alive, a response whose body
is chunked, sized by Content-Length or ended by the server's close, and its lines.

- **Pool.** At most `pool` connections; idle ones are reused last-in first-out. A connection goes
  back to the pool only once its response has been read to the end and the server did not ask to
  close it. A response left early (the guard stopped the stream, an error, a cut) closes its
  connection, which is how the engine learns that its client has gone (vLLM then aborts the request).
- **A kept-alive connection the server closed.** An idle connection whose server has closed it (vLLM
  closes those idle for 5 s) is seen as such by the loop, which reads it, and is dropped before
  reuse. If a reused connection still fails before any byte of the answer (the server closed it as
  the request went out), the request is sent once more on a new connection: the server had not
  read it.
- **Timeouts.** `connect_timeout` to connect, `timeout` for every wait on the server after that
  (the head, then each chunk of the body, each read whole within it): a server silent that long is a
  `Timeout`. One timeout per piece, not per line: each costs the loop a timer. Waiting for a free
  connection has no timeout of its own: the pool is sized to the process's generations.
- **Errors.** `ConnectError` (nothing listening, refused, no route, name not found), `Timeout`,
  `ReadError` (the connection broke or the answer is not HTTP); all are `HTTPError`.
- **Credentials.** `user:password@` in the URL is sent as basic authentication, else the `headers`
  given (a bearer token). No proxy is used: the engine is reached directly.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import json as jsonlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

# A head (status line and headers) or chunk-size line longer than this is not HTTP we accept.
MAX_LINE = 64 * 1024


class HTTPError(Exception):
    pass


class ConnectError(HTTPError):
    pass


class Timeout(HTTPError):
    pass


class ReadError(HTTPError):
    pass


class _NoAnswer(ReadError):
    """The connection ended before the first byte of the answer."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reused = False

    def usable(self) -> bool:
        """False once the server closed it (the loop has read its end) or it broke."""
        return not self.writer.is_closing() and not self.reader.at_eof() and self.reader.exception() is None

    def close(self) -> None:
        self.writer.close()


class Response:
    """A response whose status line and headers are read; its body is read on demand, once."""

    def __init__(
        self,
        client: AsyncClient,
        conn: _Connection,
        status: int,
        headers: dict[str, str],
        timeout: float,
        http10: bool = False,
    ) -> None:
        self.client, self.conn, self.timeout = client, conn, timeout
        self.status_code = status
        self.headers = headers
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = "0" if status in (204, 304) else headers.get("content-length")  # these have no body
        try:
            self.length = int(length) if length is not None and not self.chunked else None
        except ValueError:
            raise ReadError(f"a Content-Length that is not a number: {length[:40]!r}") from None
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when told to keep it
        kept = connection == "keep-alive" if http10 else connection != "close"
        self.keep = kept and (self.chunked or self.length is not None)
        self.complete = False  # the body was read to its end
        self.content = b""

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (chunks of a chunked body)."""
        if self.complete:
            return
        pieces = (
            self._chunked()
            if self.chunked
            else self._sized()
            if self.length is not None
            else self._to_close()
        )
        async for data in pieces:
            yield data
        self.complete = True

    async def _chunked(self) -> AsyncIterator[bytes]:
        while (data := await self.client.read(self._chunk(), self.timeout)) is not None:
            yield data

    async def _chunk(self) -> bytes | None:
        """The next chunk's data (its size line, data and end read within one timeout); None after the
        last chunk and the trailers."""
        reader = self.conn.reader
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ReadError(f"a chunk size that is not hexadecimal: {line[:80]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the end
                pass
            return None
        return (await reader.readexactly(size + 2))[:-2]

    async def _sized(self) -> AsyncIterator[bytes]:
        left = self.length or 0
        while left:
            data = await self.client.read(self.conn.reader.read(min(left, 1 << 16)), self.timeout)
            if not data:
                raise ReadError(f"the server closed the connection {left} bytes before the body's end")
            left -= len(data)
            yield data

    async def _to_close(self) -> AsyncIterator[bytes]:
        while data := await self.client.read(self.conn.reader.read(1 << 16), self.timeout):
            yield data

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines (ended by `\\n` or `\\r\\n`), decoded as UTF-8 (a character split between
        two chunks is joined)."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        async for data in self.aiter_bytes():
            text = pending + decoder.decode(data)
            if "\n" not in text:
                pending = text
                continue
            lines = text.split("\n")
            pending = lines.pop()
            for line in lines:
                yield line[:-1] if line.endswith("\r") else line
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending[:-1] if pending.endswith("\r") else pending

    async def aread(self) -> bytes:
        self.content += b"".join([data async for data in self.aiter_bytes()])
        return self.content

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class AsyncClient:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        pool: int = 256,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        fixed = {"Host": parts.netloc.rpartition("@")[2], "Accept": "*/*", **(headers or {})}
        if parts.username is not None:
            user_password = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            fixed["Authorization"] = "Basic " + base64.b64encode(user_password.encode()).decode()
        self.head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(pool)  # bound to the loop at its first wait (Python >= 3.10)
        self.connections_opened = 0  # for tests and benchmarks

    @staticmethod
    async def read(waiting: Any, timeout: float) -> Any:
        """Await a read of the server's answer within `timeout` seconds, its failures as ours."""
        try:
            async with asyncio.timeout(timeout):
                return await waiting
        except TimeoutError:
            raise Timeout(f"no answer from the server for {timeout:g} s") from None
        except asyncio.IncompleteReadError as exc:
            raise ReadError(
                f"the server closed the connection mid-answer ({len(exc.partial)} bytes)"
            ) from exc
        except asyncio.LimitOverrunError:
            raise ReadError(f"a head or line longer than {MAX_LINE} bytes: not an HTTP answer") from None
        except (OSError, ssl.SSLError) as exc:
            raise ReadError(f"{type(exc).__name__}: {exc}") from exc

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, json: Any = None, timeout: float | None = None
    ) -> AsyncIterator[Response]:
        """Send the request; the response with its head read, its body to read. Its connection goes back
        to the pool if the body was read to the end, else it is closed."""
        body = b"" if json is None else jsonlib.dumps(json).encode()
        request = (
            f"{method} {self.prefix}{path} HTTP/1.1\r\n{self.head}"
            + ("Content-Type: application/json\r\n" if json is not None else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        async with self.slots:
            response = await self._send(request, self.timeout if timeout is None else timeout)
            try:
                yield response
            finally:
                if response.complete and response.keep and response.conn.usable():
                    self.idle.append(response.conn)
                else:
                    response.conn.close()

    async def post(self, path: str, json: Any = None, timeout: float | None = None) -> Response:
        """A request whose answer is read whole."""
        async with self.stream("POST", path, json, timeout) as response:
            await response.aread()
        return response

    async def _send(self, request: bytes, timeout: float) -> Response:
        conn = await self._connection()
        while True:
            try:
                conn.writer.write(request)
                return await self._head(conn, timeout)
            except _NoAnswer:
                conn.close()
                if not conn.reused:
                    raise
            except BaseException:
                conn.close()
                raise
            # a kept-alive connection the server closed as the request went out: it had not read it,
            # so it goes once more on a new connection (not reused: a second failure is raised)
            conn = await self._connection(fresh=True)

    async def _connection(self, fresh: bool = False) -> _Connection:
        while self.idle and not fresh:
            conn = self.idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, limit=MAX_LINE
                )
        except TimeoutError:
            raise ConnectError(
                f"no connection to {self.host}:{self.port} in {self.connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from exc
        self.connections_opened += 1
        return _Connection(reader, writer)

    async def _head(self, conn: _Connection, timeout: float) -> Response:
        """The status line and headers, read at once (one timeout, not one per line)."""
        try:
            head = await self.read(conn.reader.readuntil(b"\r\n\r\n"), timeout)
        except ReadError as exc:
            cause = exc.__cause__
            if isinstance(cause, ConnectionError) or (
                isinstance(cause, asyncio.IncompleteReadError) and not cause.partial
            ):
                raise _NoAnswer(f"the server closed the connection without an answer ({exc})") from cause
            raise
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ReadError(f"the server's answer is not HTTP/1.x: {status_line[:80]!r}")
        try:
            status = int(rest[:3])
        except ValueError:
            raise ReadError(f"a status line without a status: {status_line[:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise ReadError(f"a header line without a colon: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return await self._head(conn, timeout)
        return Response(self, conn, status, headers, timeout, http10=version == "HTTP/1.0")

    async def aclose(self) -> None:
        while self.idle:
            self.idle.pop().close()
