"""URLs a person gives pacore. An engine's URL may be its server root (`http://host:8000`) or its OpenAI
base URL (`http://host:8000/v1`, what OpenAI clients take): both mean the same server, and a malformed one
is refused at once with what to write instead. Any URL pacore shows back (messages, logs, the worker
registry) has its password hidden."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

ENGINE_URL_EXAMPLE = "http://127.0.0.1:8000 or http://127.0.0.1:8000/v1"


class BadURL(ValueError):
    pass


def engine_root(url: str) -> str:
    """The engine server's root URL (no trailing `/` or `/v1`), or BadURL saying what is wrong."""
    text = url.strip()
    shown = redact(text)
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is not a number from 0 to 65535 raises here
    except ValueError as exc:
        raise BadURL(
            f"the engine URL {shown!r} is malformed ({exc}): write it as {ENGINE_URL_EXAMPLE}"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise BadURL(f"the engine URL {shown!r} must begin with http:// or https://, as {ENGINE_URL_EXAMPLE}")
    if not parts.hostname:
        raise BadURL(f"the engine URL {shown!r} names no host: write it as {ENGINE_URL_EXAMPLE}")
    if port == 0:
        raise BadURL(
            f"the engine URL {shown!r} has port 0: give the port `vllm serve` listens on, as {ENGINE_URL_EXAMPLE}"
        )
    if parts.query or parts.fragment:
        raise BadURL(f"the engine URL {shown!r} has a query or fragment: write it as {ENGINE_URL_EXAMPLE}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by `***`; anything that does not parse is shown as is
    only when it holds no `@` (where credentials would be)."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return url if "@" not in url else "<a URL with credentials, hidden>"
    if not has_password:
        return url
    return urlunsplit(_with_hidden_password(parts))


def _with_hidden_password(parts: SplitResult) -> SplitResult:
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}")
