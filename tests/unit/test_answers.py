import pytest

from pacore.core.answers import extract_boxed


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The answer is \\boxed{204}.", "204"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\fbox{7}", "7"),
        ("\\boxed {8}", "8"),
        ("no box", None),
        ("\\boxed{unclosed", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_boxed(text: str | None, answer: str | None) -> None:
    assert extract_boxed(text) == answer
