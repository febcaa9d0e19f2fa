"""Engine faults against a real HTTP server (FakeEngine): transient ones are retried with backoff (a
stream cut midway is continued after what it streamed), a context-length error is retried once with
a max_tokens that fits, others fail at once."""

import json
import re
from pathlib import Path

import pytest

from tests.fake_engine import TOKEN_BASE
from tests.integration.conftest import Fleet


def campaign(fleet: Fleet, tmp_path: Path, name: str, text: str, *args: str) -> dict:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps({"id": name, "problem": text}) + "\n")
    fleet.submit(path, "--preset", "low", *args)
    return fleet.wait_finished(name)


def ledger(fleet: Fleet, campaign_id: int) -> tuple[int, int, int, int]:
    """(attempt rows, retries, tokens spent, tokens wasted) over the campaign's attempt ledger."""
    return fleet.query(
        "SELECT count(*), sum(a.retries), sum(a.completion_tokens), sum(a.wasted_tokens) FROM attempt a "
        "JOIN trajectory t ON t.id = a.trajectory_id WHERE t.campaign_id = %s",
        campaign_id,
    )[0]


def test_http_500_is_retried(fleet: Fleet, tmp_path: Path) -> None:
    status = campaign(fleet, tmp_path, "flaky", "FLAKY500 first request of each round fails")
    assert status["runs"] == {"total": 1, "done": 1}
    # one failed request per round (per distinct prompt), each retried once; nothing streamed, no waste
    assert ledger(fleet, status["id"]) == (5, 2, 5 * 7, 0)


def test_http_429_is_retried(fleet: Fleet, tmp_path: Path) -> None:
    status = campaign(fleet, tmp_path, "limited", "RATE429 first request of each round is rate limited")
    assert status["runs"] == {"total": 1, "done": 1} and ledger(fleet, status["id"])[:2] == (5, 2)


def test_a_timeout_is_retried(fleet: Fleet, tmp_path: Path) -> None:
    status = campaign(fleet, tmp_path, "hang", "HANG first request of each round never answers in time")
    assert status["runs"] == {"total": 1, "done": 1} and ledger(fleet, status["id"])[:2] == (5, 2)


def test_a_dropped_stream_is_continued_after_what_it_streamed(fleet: Fleet, tmp_path: Path) -> None:
    status = campaign(fleet, tmp_path, "dropped", "DROP first stream of each round is cut after 3 tokens")
    assert status["runs"] == {"total": 1, "done": 1}
    # one cut stream per round, continued through the raw completions API: nothing generated twice
    assert ledger(fleet, status["id"]) == (5, 2, 5 * 7, 0)
    assert status["tokens"]["used"] == 5 * 7 and status["tokens"]["wasted"] == 0
    continued = [r for r in fleet_requests(fleet, "DROP first stream") if "prompt" in r]
    # the rendered prompt (as the chat API's first chunk gave it), then the ids of the 3 tokens streamed
    # ("thinking", " w", " The"): the engine's own, not the text tokenized again
    assert [r["prompt"][r["prompt"].index(0) + 1 :] for r in continued] == [
        [TOKEN_BASE + k for k in range(3)]
    ] * 2
    assert all(r["prompt"][: r["prompt"].index(0) + 1] == fleet.engine_ref.tokenize(r) for r in continued)
    stored = fleet.query(
        "SELECT completion_tokens, reasoning, content FROM trajectory WHERE campaign_id = %s", status["id"]
    )
    assert all(
        tokens == 7 and reasoning == "thinking w" and "boxed" in content
        for tokens, reasoning, content in stored
    )


def test_where_the_engine_cannot_continue_it_starts_afresh_and_counts_the_waste(
    fleet: Fleet, tmp_path: Path
) -> None:
    """An engine with neither token ids nor /tokenize cannot continue a cut stream: the trajectory starts
    afresh with its whole max_tokens held up front (it cannot be generated in segments either)."""
    text = "DROP NOCONT NOIDS an engine without the tokenize endpoint or token ids"
    status = campaign(fleet, tmp_path, "afresh", text, "--max-tokens", "100")
    assert status["runs"] == {"total": 1, "done": 1}
    assert ledger(fleet, status["id"]) == (5, 2, 5 * 7 + 2 * 3, 2 * 3)
    assert status["tokens"]["used"] == 5 * 7 + 6 and status["tokens"]["wasted"] == 6
    notes = [
        n for (n,) in fleet.query("SELECT error FROM trajectory WHERE campaign_id = %s", status["id"]) if n
    ]
    assert len(notes) == 2 and all("started afresh" in n for n in notes)
    sent = fleet_requests(fleet, "DROP NOCONT NOIDS an engine")
    assert len(sent) == 5 + 2 and not any("prompt" in r for r in sent), "2 cut streams started again"


def test_an_engine_that_cannot_continue_needs_a_max_tokens_to_hold(fleet: Fleet, tmp_path: Path) -> None:
    """With no max_tokens to hold up front, the attempt that could not continue fails with that reason;
    the next attempt starts afresh (and, its stream not cut, finishes)."""
    status = campaign(fleet, tmp_path, "nohold", "DROP NOCONT NOIDS and no max_tokens to hold up front")
    assert status["runs"] == {"total": 1, "done": 1}
    failed = fleet.query(
        "SELECT a.error FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
        "WHERE t.campaign_id = %s AND a.outcome = 'failed'",
        status["id"],
    )
    assert len(failed) == 2, "the first attempt of each round's first cut stream"
    assert all("cannot continue a trajectory in segments" in e and "set --max-tokens" in e for (e,) in failed)


def test_a_context_length_error_retries_once_with_a_max_tokens_that_fits(
    fleet: Fleet, tmp_path: Path
) -> None:
    status = campaign(fleet, tmp_path, "context", "CONTEXT400 a small context", "--max-tokens", "1000")
    assert status["runs"] == {"total": 1, "done": 1}
    notes = fleet.query("SELECT error FROM trajectory WHERE campaign_id = %s ORDER BY id", status["id"])
    assert all(
        n[0].startswith("max_tokens lowered from 1000 to ") and n[0].endswith("after a context-length error")
        for n in notes
    )
    sent = [r.get("max_tokens") for r in fleet_requests(fleet, "CONTEXT400")]
    assert sent.count(1000) == 5 and len(sent) == 10 and all(m < 400 for m in sent if m != 1000)


def test_a_request_that_cannot_succeed_fails_at_once_with_the_servers_message(
    fleet: Fleet, tmp_path: Path
) -> None:
    before = len(fleet_requests(fleet, "BAD400"))
    status = campaign(fleet, tmp_path, "bad", "BAD400 an invalid request")
    assert status["runs"] == {"total": 1, "failed": 1}
    # round 1's 4, then (the round goes on without references) the final round's 1: each tried once
    assert len(fleet_requests(fleet, "BAD400")) - before == 5, "no retries"
    errors = fleet.query("SELECT DISTINCT error FROM trajectory WHERE campaign_id = %s", status["id"])
    assert errors == [("http: HTTP 400: scripted bad request: top_p must be in (0, 1] (after 1 tries)",)]


def fleet_requests(fleet: Fleet, marker: str) -> list[dict]:
    engine = fleet.engine_ref
    return [r for r in engine.requests if marker in r["messages"][-1]["content"]]


def test_json_logs_carry_the_ids(fake_fleet, tmp_path: Path) -> None:
    with fake_fleet(extra_env={"PACORE_LOG_FORMAT": "json"}) as fleet:
        text = "DROP NOCONT NOIDS a cut stream that cannot be continued"
        status = campaign(fleet, tmp_path, "logged", text, "--max-tokens", "100")
        assert status["runs"] == {"total": 1, "done": 1}
    lines = [
        json.loads(line)
        for line in (tmp_path / "worker-0.log").read_text().splitlines()
        if line.startswith("{")
    ]
    noted = [line for line in lines if "started afresh" in line["message"]]
    assert noted and all(
        line["campaign_id"] == status["id"]
        and line["run_id"]
        and line["trajectory_id"]
        and line["attempt"] == 1
        for line in noted
    )
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_max_tokens_past_the_engines_context_is_clamped_at_claim(fleet: Fleet, tmp_path: Path) -> None:
    """FakeEngine states max_model_len 4096 on /v1/models, as vLLM does: a campaign's larger
    --max-tokens is lowered to it by the worker, so the engine never refuses the request."""
    status = campaign(fleet, tmp_path, "clamped", "CLAMP a problem", "--max-tokens", "100000")
    assert status["runs"] == {"total": 1, "done": 1}
    asked = {r["max_tokens"] for r in fleet_requests(fleet, "CLAMP")}
    assert asked == {4096}


@pytest.mark.parametrize(
    ("marker", "words"),
    [
        ("MALFORMED", "malformed: the engine sent a line that is not JSON: '{this is not json'"),
        ("NULLCHOICE", "malformed: the engine sent a choice that is not an object"),
        ("KEEPALIVE", "timeout: no first token for 1 s (keep-alives do not count)"),
        # a stream that sends no line at all: the worker's watchdog cuts it at the same timeout
        ("SILENT", "timeout: no first token for [12] s (the stream went silent)"),
        ("STALL", "timeout: no first token for [12] s (the stream went silent)"),
    ],
)
def test_engine_misbehaviour_ends_the_attempt_with_the_engines_words(
    fake_fleet, tmp_path: Path, marker: str, words: str
) -> None:
    """Output the API does not promise, or a stream of keep-alives only, is an attempt's failure (after
    its bounded retries), recorded with the engine's words: never a loop of re-drives."""
    env = {"PACORE_FIRST_TOKEN_TIMEOUT": "1", "PACORE_ENGINE_RETRIES": "2"}
    with fake_fleet(extra_env=env) as fleet:
        status = campaign(fleet, tmp_path, marker.lower(), f"{marker} a problem")
        assert status["runs"] == {"total": 1, "failed": 1}, (
            "round 1 goes on without references; the final fails"
        )
        rows = fleet.query(
            "SELECT t.status, t.attempt, t.error, (SELECT count(*) FROM attempt a WHERE a.trajectory_id = t.id) "
            "FROM trajectory t WHERE t.campaign_id = %s",
            status["id"],
        )
    assert len(rows) == 5
    for t_status, attempt, error, settled in rows:
        # PACORE_MAX_ATTEMPTS (3) attempts, each settled once, then failed: no re-drive loop
        assert (t_status, attempt, settled) == ("failed", 3, 3)
        assert re.match(re.escape(words).replace(r"\[12\]", "[12]"), error), error
        # the last try's error ends the attempt; the try before it was retried, and its words kept too
        # (with what the closed requests were charged unseen)
        parts = error.split("; ")
        retried = [p.removeprefix("try 1 failed, retried: ") for p in parts if p.startswith("try 1 failed")]
        assert parts[0].endswith("(after 2 tries)") and len(retried) == 1, error
        assert re.match(re.escape(words).replace(r"\[12\]", "[12]"), retried[0]), error


def test_a_failed_attempt_is_followed_by_another(fake_fleet, tmp_path: Path) -> None:
    """The first 2 requests of each round's prompt fail (500): with 2 tries an attempt, the first attempt
    fails, and the next one (afresh) succeeds; the failed one is in the ledger, all waste."""
    with fake_fleet(extra_env={"PACORE_ENGINE_RETRIES": "2"}) as fleet:
        path = tmp_path / "again.jsonl"
        path.write_text(json.dumps({"id": "again", "problem": "FAILFIRST2 a problem"}) + "\n")
        fleet.submit(path, "--rounds", "1")
        status = fleet.wait_finished("again")
        assert status["runs"] == {"total": 1, "done": 1}
        rows = fleet.query(
            "SELECT t.status, t.attempt, t.failed_attempts, "
            "(SELECT array_agg(a.outcome ORDER BY a.attempt) FROM attempt a WHERE a.trajectory_id = t.id) "
            "FROM trajectory t WHERE t.campaign_id = %s",
            status["id"],
        )
    assert rows == [("done", 2, 1, ["failed", "done"])] * 2
