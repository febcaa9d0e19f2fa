import pytest

from pacore.core.retry import after_failed_attempt, fitting_max_tokens, retry_decision

VLLM_CONTEXT_ERROR = (
    "This model's maximum context length is 4096 tokens. However, you requested 4196 tokens "
    "(100 in the messages, 4096 in the completion). Please reduce the length of the messages or completion."
)
VLLM_NEWER_CONTEXT_ERROR = (
    "'max_tokens' or 'max_completion_tokens' is too large: 5000. This model's maximum context length is 4096 "
    "tokens and your request has 120 input tokens (5000 > 4096 - 120)."
)


@pytest.mark.parametrize(
    ("kind", "status", "message", "decision"),
    [
        ("connection", None, "ConnectError", "retry"),
        ("timeout", None, "ReadTimeout", "retry"),
        ("stream", None, "the stream ended without a finish reason", "retry"),
        ("http", 500, "HTTP 500: boom", "retry"),
        ("http", 503, "HTTP 503: overloaded", "retry"),
        ("http", 429, "HTTP 429: slow down", "retry"),
        ("http", 408, "HTTP 408", "retry"),
        ("http", 400, f"HTTP 400: {VLLM_CONTEXT_ERROR}", "fit"),
        ("http", 400, f"HTTP 400: {VLLM_NEWER_CONTEXT_ERROR}", "fit"),
        ("http", 400, "HTTP 400: temperature must be non-negative", "fail"),
        ("http", 404, "HTTP 404: The model `x` does not exist.", "fail"),
        ("http", 401, "HTTP 401: Unauthorized", "fail"),
    ],
)
def test_retry_decision(kind, status, message, decision) -> None:
    assert retry_decision(kind, status, message) == decision


def test_fitting_max_tokens() -> None:
    assert fitting_max_tokens(VLLM_CONTEXT_ERROR) == 3996
    assert fitting_max_tokens(VLLM_NEWER_CONTEXT_ERROR) == 3976
    assert fitting_max_tokens("something else") is None
    assert (
        fitting_max_tokens(
            "maximum context length is 100 tokens. However, you requested 300 tokens (150 in the messages"
        )
        is None
    )


@pytest.mark.parametrize(
    ("failed_before", "max_attempts", "then"),
    [(0, 3, "again"), (1, 3, "again"), (2, 3, "fail"), (0, 1, "fail"), (5, 3, "fail")],
)
def test_a_failed_attempt_is_followed_by_another_until_the_cap(failed_before, max_attempts, then) -> None:
    assert after_failed_attempt(failed_before, max_attempts) == then
