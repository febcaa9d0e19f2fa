"""Problem file parsing: the real public files, and a corpus of malformed lines."""

import json
from pathlib import Path

import pytest

from pacore.campaigns.problem_file import read_problems
from pacore.core.problems import MAX_LINE_BYTES, LineError, Problem, parse_line
from tests.conftest import shared_file


@pytest.mark.parametrize(("name", "count"), [("aime_2024.jsonl", 30), ("math500.jsonl", 500)])
def test_real_problem_files_parse_completely(name: str, count: int) -> None:
    items = list(read_problems(shared_file(name)))
    assert all(isinstance(p, Problem) for p in items), [str(e) for e in items if isinstance(e, LineError)]
    assert len(items) == count
    first = items[0]
    assert first.messages[-1]["role"] == "user" and first.ground_truth and first.ground_truth["answer"]


def test_aime_keeps_asymptote_code_and_answers_as_text() -> None:
    items = [p for p in read_problems(shared_file("aime_2024.jsonl")) if isinstance(p, Problem)]
    with_code = [
        p.external_id
        for p in items
        if "<asy>" in p.messages[-1]["content"] and "</asy>" in p.messages[-1]["content"]
    ]
    assert with_code == ["aime24_I_05", "aime24_I_06", "aime24_I_08", "aime24_II_08", "aime24_II_15"]
    assert {p.ground_truth["answer"] for p in items if p.external_id == "aime24_I_01"} == {"204"}


def test_shorthand_format() -> None:
    p = parse_line(b'{"id": 7, "problem": "What is 2+2?", "answer": 4, "source": "x"}', 1)
    assert isinstance(p, Problem)
    assert p.external_id == "7" and p.messages == [{"role": "user", "content": "What is 2+2?"}]
    assert p.ground_truth == {"answer": "4"} and p.extra == {"source": "x"}


def test_official_format_keeps_extra_fields_and_category() -> None:
    line = {
        "id": "a",
        "messages": [{"role": "user", "content": "Q"}],
        "ground_truth": {"answer": "1"},
        "category": "math",
        "level": 5,
    }
    p = parse_line(json.dumps(line).encode(), 3)
    assert isinstance(p, Problem) and p.category == "math" and p.extra == {"level": 5} and p.line == 3


MALFORMED = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'"just a string"', "expected a JSON object"),
    (b'{"id": "a"}', "no problem text"),
    (b'{"id": null, "problem": "Q"}', '"id" is null: give a non-empty string or integer, or leave "id" out'),
    (b'{"id": "", "problem": "Q"}', '"id" is "": give a non-empty string'),
    (b'{"id": true, "problem": "Q"}', '"id" is true'),
    (b'{"id": "a", "problem": ""}', '"problem" must be a non-empty string'),
    (b'{"id": "a", "problem": 5}', '"problem" must be a non-empty string'),
    (b'{"id": "a", "messages": []}', '"messages" must be a non-empty list'),
    (b'{"id": "a", "messages": "Q"}', '"messages" must be a non-empty list'),
    (b'{"id": "a", "messages": ["Q"]}', "messages[0] is not an object"),
    (
        b'{"id": "a", "messages": [{"role": "user", "content": 5}]}',
        "messages[0].content, the problem (the last user message), must be a string",
    ),
    (
        b'{"id": "a", "messages": [{"role": "user", "content": "Q"}, {"role": "user"}]}',
        "messages[1].content, the problem (the last user message), must be a string",
    ),
    (b'{"id": "a", "messages": [{"role": "system", "content": "S"}]}', "has no user message"),
    (
        b'{"id": "a", "messages": [{"role": "user", "content": "  "}]}',
        "messages[0].content, the problem (the last user message), is empty",
    ),
    (
        b'{"id": "a", "messages": [{"role": "user", "content": "Q"}], "ground_truth": "4"}',
        '"ground_truth" must be an object',
    ),
    (
        b'{"id": "a", "messages": [{"role": "user", "content": "Q"}], "ground_truth": {"answer": [4]}}',
        "ground_truth.answer",
    ),
    (
        b'{"id": "a", "messages": [{"role": "user", "content": "Q"}], "category": 3}',
        '"category" must be a string',
    ),
    (b'{"id": "a", "problem": "Q", "messages": [{"role": "user", "content": "Q"}]}', "has both"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    # text PostgreSQL cannot store, numbers JSON has not, nesting no problem needs (issue #15)
    (b'{"id": "a", "problem": "Q\\u0000"}', "problem holds a NUL character (\\u0000)"),
    (b'{"id": "a", "problem": "Q", "note\\u0000": 1}', "the key 'note\\x00' holds a NUL character"),
    (b'{"id": "a", "problem": "Q \\ud835"}', "problem holds a lone surrogate"),
    (b'{"id": "a", "problem": "Q", "answer": NaN}', "holds NaN, which is not a JSON number"),
    (b'{"id": "a", "problem": "Q", "answer": -Infinity}', "holds -Infinity, which is not a JSON number"),
    (b'{"id": "a", "problem": "Q", "answer": 1e400}', "holds the number 1e400, too large for a float"),
    (b'{"id": "a", "problem": "Q", "x": ' + b"[" * 65 + b"]" * 65 + b"}", "nested deeper than 64 levels"),
    (b'{"id": "a", "problem": "Q", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than 64"),
    (b'\xef\xbb\xbf{"id": "a", "problem": "Q"}', "not valid JSON"),  # a byte-order mark past line 1
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED)
def test_malformed_lines_are_reported_with_their_reason(raw: bytes, reason: str) -> None:
    error = parse_line(raw, 12)
    assert isinstance(error, LineError) and error.line == 12
    assert reason in error.reason, error.reason


def test_a_byte_order_mark_at_the_start_of_the_file_is_accepted() -> None:
    problem = parse_line(b'\xef\xbb\xbf{"id": "a", "problem": "Q", "answer": 2.5}', 1)
    assert isinstance(problem, Problem) and problem.external_id == "a"
    assert problem.ground_truth == {"answer": "2.5"}


def test_a_surrogate_pair_is_one_character_and_passes() -> None:
    problem = parse_line(b'{"id": "a", "problem": "\\ud835\\udc31 = 2"}', 1)
    assert isinstance(problem, Problem) and problem.messages[0]["content"] == "\U0001d431 = 2"


def test_blank_lines_are_not_problems() -> None:
    assert parse_line(b"   ", 1) is None


def test_file_reader_reports_duplicates_and_oversized_lines_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    huge = json.dumps({"id": "big", "problem": "x" * (MAX_LINE_BYTES + 10)})
    path.write_text(
        "\n".join(
            [
                '{"id": "a", "problem": "Q1"}',
                "",
                '{"id": "a", "problem": "Q2"}',
                huge,
                '{"id": "b", "problem": "Q3"}',
            ]
        )
        + "\n"
    )
    items = list(read_problems(path))
    assert [type(i).__name__ for i in items] == ["Problem", "LineError", "LineError", "Problem"]
    assert str(items[1]) == "line 3: duplicate id 'a' (first on line 1)"
    assert items[2].line == 4 and "over the 1,048,576-byte limit" in items[2].reason
    assert items[3].line == 5


def test_a_huge_line_without_newline_is_measured_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "one-line.jsonl"
    path.write_bytes(b"x" * (3 * MAX_LINE_BYTES))
    (error,) = list(read_problems(path))
    assert isinstance(error, LineError) and f"{3 * MAX_LINE_BYTES:,} bytes" in error.reason


def test_any_role_and_any_key_pass_through_as_submitted() -> None:
    messages = [
        {"role": "developer", "content": "D", "name": "ops"},
        {"role": "user", "content": [{"type": "text", "text": "earlier"}]},
        {"role": "assistant", "content": None, "reasoning_content": "r", "tool_calls": []},
        {"role": "user", "content": "The problem", "name": "alice"},
        {"role": "assistant", "content": "prefill"},
    ]
    p = parse_line(json.dumps({"id": "a", "messages": messages}).encode(), 1)
    assert isinstance(p, Problem) and p.messages == messages


def test_a_line_without_id_gets_the_official_req_n() -> None:
    p = parse_line(b'{"problem": "Q"}', 9, ordinal=4)
    assert isinstance(p, Problem) and p.external_id == "req_4" and p.id_generated


def test_generated_ids_count_non_blank_lines_and_collisions_name_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"problem": "Q0"}',  # line 1: req_0
                "",
                '{"id": "req_3", "problem": "Q1"}',  # line 3
                "   ",
                "{broken",  # line 5: not blank, so it counts (req_2)
                '{"problem": "Q3"}',  # line 6: req_3, taken by line 3
                '{"id": "req_5", "problem": "Q4"}',  # line 7
                "",
                '{"problem": "Q5"}',  # line 9: req_5, taken by line 7
                '{"problem": "Q6"}',  # line 10: req_6
                '{"id": "req_6", "problem": "Q7"}',  # line 11: req_6 was generated for line 10
            ]
        )
        + "\n"
    )
    items = list(read_problems(path))
    assert [(i.line, getattr(i, "external_id", None)) for i in items] == [
        (1, "req_0"),
        (3, "req_3"),
        (5, None),
        (6, None),
        (7, "req_5"),
        (9, None),
        (10, "req_6"),
        (11, None),
    ]
    assert str(items[3]) == (
        "line 6: no \"id\": its generated id 'req_3' is already the id of line 3; "
        'give line 6 an "id" or rename the one on line 3'
    )
    assert "line 9: no \"id\": its generated id 'req_5' is already the id of line 7" in str(items[5])
    assert str(items[7]) == (
        "line 11: id 'req_6' is the id generated for line 10, which has no \"id\"; "
        'choose another id or give line 10 an "id"'
    )
