"""`pacore submit` and `pacore status` through the real CLI on a real PostgreSQL."""

import json
from pathlib import Path

import psycopg
import pytest

from tests.conftest import shared_file


def counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("campaign", "problem", "run")
        )


def test_math500_high_with_four_samples(cli, database_url) -> None:
    result = cli("submit", str(shared_file("math500.jsonl")), "--preset", "high", "--samples", "4", "--json")
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted == {
        "campaign_id": submitted["campaign_id"],
        "name": "math500",
        "problems": 500,
        "runs": 2000,
    }
    status = json.loads(cli("status", "--json").stdout)
    (campaign,) = status["campaigns"]
    assert campaign["problems"] == 500 and campaign["runs"] == {"total": 2000, "pending": 2000}
    assert campaign["config"]["rounds"] == [32, 4] and campaign["config"]["samples"] == 4
    one = json.loads(cli("status", "math500", "--json").stdout)
    assert one["name"] == "math500" and one["runs"]["total"] == 2000
    assert counts(database_url) == (1, 500, 2000)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT messages, ground_truth, extra, line FROM problem WHERE external_id = 'math500_precalculus_807'"
        ).fetchone()
    first = json.loads(shared_file("math500.jsonl").read_text().splitlines()[0])
    assert stored == (first["messages"], first["ground_truth"], {}, 1), "stored as JSON, exactly as read"


def test_options_are_stored_in_the_campaign_config(cli) -> None:
    result = cli(
        "submit",
        str(shared_file("aime_2024.jsonl")),
        "--name",
        "aime-custom",
        "--rounds",
        "8,2",
        "--model",
        "m1",
        "--max-tokens",
        "131072",
        "--temperature",
        "0.6",
        "--top-p",
        "0.95",
        "--seed",
        "7",
        "--problem-budget",
        "2M",
        "--campaign-budget",
        "500k",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(cli("status", "aime-custom", "--json").stdout)["config"]
    assert (config["rounds"], config["model"], config["max_tokens"]) == ([8, 2], "m1", 131072)
    assert (config["temperature"], config["top_p"], config["seed"]) == (0.6, 0.95, 7)
    assert (config["problem_budget"], config["campaign_budget"]) == (2_000_000, 500_000)


def bad_among_hundred_good(path: Path) -> tuple[Path, list[int]]:
    good = [json.dumps({"id": f"p{i}", "problem": f"What is {i}+{i}?", "answer": 2 * i}) for i in range(100)]
    bad = [
        "{oops",
        '{"id": "x1"}',
        '{"id": "x2", "messages": [{"role": "bot", "content": "Q"}]}',
        "[]",
        '{"id": "p3", "problem": "dup"}',
        # what once made a traceback and aborted the whole file, even with --skip-invalid (issue #15)
        '{"id": "x3", "problem": "Q\\u0000"}',
        '{"id": "x4", "problem": "Q \\udc00"}',
        '{"id": "x5", "problem": "Q", "deep": ' + "[" * 50_000 + "]" * 50_000 + "}",
    ]
    lines, bad_numbers = [], []
    for i, line in enumerate(good):
        lines.append(line)
        if i % 12 == 10:
            lines.append(bad[len(bad_numbers)])
            bad_numbers.append(len(lines))
    path.write_text("\n".join(lines) + "\n")
    return path, bad_numbers


def test_bad_lines_reject_the_file_and_write_nothing(cli, database_url, tmp_path) -> None:
    path, bad = bad_among_hundred_good(tmp_path / "mixed.jsonl")
    result = cli("submit", str(path))
    assert result.returncode != 0
    for number in bad:
        assert f"line {number}:" in result.stderr, result.stderr
    assert "8 invalid line(s); nothing was submitted" in result.stderr
    assert counts(database_url) == (0, 0, 0)


def test_skip_invalid_submits_the_good_and_reports_the_bad(cli, database_url, tmp_path) -> None:
    path, bad = bad_among_hundred_good(tmp_path / "mixed.jsonl")
    result = cli("submit", str(path), "--skip-invalid", "--samples", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["problems"] == 100 and json.loads(result.stdout)["runs"] == 200
    assert all(f"line {n}:" in result.stderr for n in bad) and "skipped 8 invalid line(s)" in result.stderr
    assert counts(database_url) == (1, 100, 200)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no problems to submit"),
        (b"\n\n  \n", "no problems to submit"),
        (b"\x00\x01\xff\xfe" * 100, "not UTF-8"),
        (b'{"id": "a", "problem": "' + b"x" * 3_000_000 + b'"}\n', "over the 1,048,576-byte limit"),
    ],
    ids=["empty", "blank", "binary", "multi-MB line"],
)
def test_unusable_files_get_a_clear_error_and_write_nothing(
    cli, database_url, tmp_path, content, message
) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(content)
    result = cli("submit", str(path))
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert counts(database_url) == (0, 0, 0)


def test_missing_file_and_directory(cli, tmp_path) -> None:
    missing = cli("submit", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    directory = cli("submit", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr


def test_existing_name_says_how_to_inspect_or_resume(cli, database_url) -> None:
    path = str(shared_file("aime_2024.jsonl"))
    assert cli("submit", path, "--name", "same").returncode == 0
    again = cli("submit", path, "--name", "same")
    assert again.returncode == 1
    assert (
        "already exists" in again.stderr
        and "pacore status same" in again.stderr
        and "pacore run" in again.stderr
    )
    assert counts(database_url) == (1, 30, 30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--problem-budget", "lots"], "is not a token count"),
        (["--rounds", "4,0"], "expected positive integers"),
        (["--preset", "ultra"], "Invalid value for '--preset'"),
        (["--preset", "low", "--rounds", "4"], "not both"),
        (["--samples", "0"], "Invalid value for '--samples'"),
        # past the columns' types and the documented maxima: refused at submit, never a database error
        (
            ["--max-tokens", "3000000000"],
            "Invalid value for '--max-tokens': 3000000000 is not in the range 1<=x<=16777216",
        ),
        (["--campaign-budget", "99999999999999999999"], "is more than 1,000,000,000,000,000 tokens"),
        (["--problem-budget", "2000T"], "is not a token count"),
        (["--rounds", "5000,4"], "K=5,000 is more than the 4,096 trajectories a round may have"),
        (["--rounds", ",".join(["2"] * 65)], "65 rounds, more than the 64 pacore runs"),
        (["--pool", "100000"], "Invalid value for '--pool'"),
        (["--seed", str(2**64)], "Invalid value for '--seed'"),
        (["--name", ""], "the campaign name is empty"),
        (["--name", "  "], "the campaign name is empty"),
        (["--name", "run\x1b[2J"], "holds control characters"),
    ],
)
def test_bad_options(cli, database_url, args, message) -> None:
    result = cli("submit", str(shared_file("aime_2024.jsonl")), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert counts(database_url) == (0, 0, 0)


def test_a_database_without_schema_says_to_upgrade(cli, make_database) -> None:
    empty = make_database(empty=True)
    result = cli("status", env={"PACORE_DATABASE_URL": empty})
    assert result.returncode == 1 and "has no pacore schema: run `pacore db upgrade` first" in result.stderr
    assert cli("db", "upgrade", env={"PACORE_DATABASE_URL": empty}).returncode == 0
    assert json.loads(cli("status", "--json", env={"PACORE_DATABASE_URL": empty}).stdout) == {
        "campaigns": [],
        "fleet": [],
    }


def test_unknown_campaign(cli) -> None:
    result = cli("status", "nope")
    assert result.returncode == 1 and "no campaign named 'nope'" in result.stderr


def test_user_text_is_shown_as_text_never_as_markup_or_terminal_escapes(cli, tmp_path) -> None:
    """A name holding rich markup once crashed `pacore status` for every campaign; escapes reached the TTY."""
    path = tmp_path / "hostile.jsonl"
    path.write_text(
        json.dumps({"id": "p[/b]\u001b[2J", "problem": "What is [red]1+1[/red]?", "answer": "2"}) + "\n"
    )
    name = "[/b]camp[red]aign"
    submitted = cli("submit", str(path), "--name", name)
    assert submitted.returncode == 0, submitted.stderr
    listed = cli("status")
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout, listed.stdout
    one = cli("status", name, "p[/b]\u001b[2J")
    assert one.returncode == 0, one.stderr
    assert "p[/b]\\x1b[2J" in one.stdout, one.stdout  # the escape shown, escaped
    for said in (listed, one, submitted):
        assert "\x1b" not in said.stdout + said.stderr
