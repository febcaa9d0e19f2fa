"""Engine URLs as people write them (issue #15 item 2), and URLs shown back without their password."""

import re

import pytest

from pacore.core.urls import BadURL, engine_root, redact


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("http://10.0.0.5:8000/", "http://10.0.0.5:8000"),
        ("http://10.0.0.5:8000/v1", "http://10.0.0.5:8000"),  # the OpenAI base URL
        ("http://10.0.0.5:8000/v1/", "http://10.0.0.5:8000"),
        (" https://gpu.example.org/llm/v1 ", "https://gpu.example.org/llm"),  # behind a proxy's path
        ("http://u:p@host:8000/v1", "http://u:p@host:8000"),  # credentials kept for the requests
        ("http://[::1]:8000/v1", "http://[::1]:8000"),
    ],
)
def test_an_engine_url_may_be_the_servers_root_or_its_openai_base_url(given: str, root: str) -> None:
    assert engine_root(given) == root


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("10.0.0.5:8000", "must begin with http:// or https://"),
        ("htp://10.0.0.5:8000", "must begin with http:// or https://"),
        ("http://", "names no host"),
        ("http://10.0.0.5:80000", "is malformed (Port out of range 0-65535)"),
        ("http://10.0.0.5:eighty", "is malformed"),
        ("http://10.0.0.5:0", "has port 0"),
        ("http://10.0.0.5:8000/v1?x=1", "has a query or fragment"),
    ],
)
def test_a_malformed_engine_url_is_refused_saying_what_to_write(given: str, words: str) -> None:
    with pytest.raises(BadURL, match=re.escape(words)) as refused:
        engine_root(given)
    assert "http://127.0.0.1:8000/v1" in str(refused.value)  # what to write instead


def test_a_refusal_never_shows_the_password() -> None:
    with pytest.raises(BadURL) as refused:
        engine_root("ftp://me:hunter2@host:8000")
    assert "hunter2" not in str(refused.value) and "me:***@host:8000" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://me:hunter2@host:8000/v1", "http://me:***@host:8000/v1"),
        ("postgresql://pacore:pw@db:5432/pacore", "postgresql://pacore:***@db:5432/pacore"),
        ("http://host:8000", "http://host:8000"),
        ("http://me@host:8000", "http://me@host:8000"),  # a user name alone is no secret
        ("http://me:p@ss@[bad", "<a URL with credentials, hidden>"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redact(url) == shown
