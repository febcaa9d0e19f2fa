"""Segments: what a request may ask for, its seed, and whether a `length` finish ends the trajectory."""

import pytest

from pacore.core.segments import after_segment, segment_max_tokens, segment_seed


@pytest.mark.parametrize(
    ("cap_left", "unspent", "ask"),
    [
        (None, 8192, 8192),  # no cap: what is held
        (100_000, 8192, 8192),  # the hold is the limit
        (300, 8192, 300),  # the cap is
        (0, 8192, 0),
        (None, 0, 0),  # nothing held: nothing asked
        (500, -3, 0),
    ],
)
def test_a_request_asks_for_no_more_than_is_held_or_the_cap_allows(cap_left, unspent, ask) -> None:
    assert segment_max_tokens(cap_left, unspent) == ask


def test_a_segment_seed_is_the_seed_first_then_one_per_offset() -> None:
    assert segment_seed(None, 8192) is None
    assert segment_seed(42, 0) == 42, "one segment samples as an unsegmented request"
    later = [segment_seed(42, offset) for offset in (8192, 16384, 24576)]
    assert later == [segment_seed(42, offset) for offset in (8192, 16384, 24576)], "the same on replay"
    assert len({42, *later}) == 4, "no segment repeats another's draws"
    assert all(s is not None and 0 <= s < 2**63 for s in later), "a seed vLLM takes (int64)"
    assert segment_seed(43, 8192) != segment_seed(42, 8192)


@pytest.mark.parametrize(
    ("finish", "asked", "cap_left", "context_bound", "then"),
    [
        ("length", 8192, None, False, "continue"),  # stopped at what it held
        ("length", 8192, 20_000, False, "continue"),
        ("length", 300, 300, False, "done"),  # the trajectory's max_tokens: a real truncation
        ("length", 8192, 20_000, True, "done"),  # the model's context
        ("stop", 8192, None, False, "done"),
        ("budget", 8192, None, False, "done"),
        (None, 8192, None, False, "done"),
    ],
)
def test_only_a_length_finish_at_the_hold_goes_on(finish, asked, cap_left, context_bound, then) -> None:
    assert after_segment(finish, asked, cap_left, context_bound) == then
