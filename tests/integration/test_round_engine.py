"""Rounds as chords on real Celery worker processes, Redis and PostgreSQL, against a real HTTP engine."""

import json
from pathlib import Path

from tests.integration.conftest import Fleet
from tests.official import assert_follows_official


def problems(tmp_path: Path, name: str, texts: list[str]) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"{name}-{i}", "problem": t, "answer": "1"}) + "\n" for i, t in enumerate(texts)
        )
    )
    return path


def test_low_preset_runs_finish_with_rounds_4_and_1(fleet: Fleet, tmp_path: Path) -> None:
    path = problems(tmp_path, "low", ["What is 1+1?", "What is 2+2?", "What is 3+3?"])
    fleet.submit(path, "--preset", "low", "--samples", "2")
    status = fleet.wait_finished("low")
    assert status["status"] == "done" and status["runs"] == {"total": 6, "done": 6}
    rounds = fleet.query(
        "SELECT run.id, array_agg(r.k ORDER BY r.index) FROM run JOIN round r ON r.run_id = run.id "
        "JOIN campaign c ON c.id = run.campaign_id WHERE c.name = 'low' GROUP BY run.id"
    )
    assert len(rounds) == 6 and {tuple(k) for _, k in rounds} == {(4, 1)}
    answers = fleet.query(
        "SELECT answer, final_message FROM run JOIN campaign c ON c.id = run.campaign_id WHERE c.name = 'low'"
    )
    assert all(a and a.isdigit() and f"\\boxed{{{a}}}" in m for a, m in answers)


def test_tokens_are_what_the_server_reported_and_settled_once(fleet: Fleet, tmp_path: Path) -> None:
    path = problems(tmp_path, "tokens", ["Count these words please"])
    fleet.submit(path, "--preset", "low")
    status = fleet.wait_finished("tokens")
    (used, prompt, ledger, trajectories) = fleet.query(
        "SELECT (SELECT sum(completion_tokens) FROM trajectory t WHERE t.campaign_id = c.id), "
        "(SELECT sum(prompt_tokens) FROM trajectory t WHERE t.campaign_id = c.id), "
        "(SELECT count(*) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id WHERE t.campaign_id = c.id), "
        "(SELECT count(*) FROM trajectory t WHERE t.campaign_id = c.id) FROM campaign c WHERE c.name = 'tokens'"
    )[0]
    # FakeEngine counts words, plus one end-of-sequence token: "thinking N" (2) + " The answer is \boxed{N}." (4) + 1.
    assert trajectories == 5 and ledger == 5 and used == 5 * 7
    assert status["tokens"]["used"] == used and status["tokens"]["prompt"] == prompt


def test_each_round_follows_the_official_rules_from_its_completion_order(
    fleet: Fleet, tmp_path: Path
) -> None:
    path = problems(tmp_path, "deep", ["Multi-round problem", "Another one"])
    fleet.submit(path, "--rounds", "3,2", "--samples", "2", "--seed", "7")
    fleet.wait_finished("deep")
    records = [json.loads(line) for line in fleet.pacore("export", "deep", "--no-grade").stdout.splitlines()]
    assert [len(r["round_responses"]) for r in records] == [3, 3, 3, 3]
    for record in records:
        text = {"deep-0": "Multi-round problem", "deep-1": "Another one"}[record["problem_id"]]
        assert assert_follows_official(record, [{"role": "user", "content": text}], seed=7) == 2


def test_a_round_whose_trajectories_all_fail_goes_on_like_the_official_pipeline(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Round 1 fails whole: round 2 quotes no reference; its problem still fails the engine, so the
    final trajectory fails and so does the run, with the engine's error on every trajectory."""
    path = problems(tmp_path, "faults", ["FAIL500 always", "fine"])
    fleet.submit(path, "--preset", "low")
    status = fleet.wait_finished("faults")
    assert status["runs"] == {"total": 2, "done": 1, "failed": 1}
    (reason,) = fleet.query(
        "SELECT reason FROM run WHERE status = 'failed' AND campaign_id = %s", status["id"]
    )[0]
    assert reason == "the final round's trajectory failed"
    errors = fleet.query(
        "SELECT DISTINCT error FROM trajectory WHERE status = 'failed' AND campaign_id = %s", status["id"]
    )
    # the scripted error (tests/fake_engine.py), the retried tries' identical words kept once
    final = (
        "http: HTTP 500: scripted internal error (after 4 tries); "
        "tries 1-3 failed, retried: http: HTTP 500: scripted internal error"
    )
    assert errors == [(final,)]
    exported = [
        json.loads(line) for line in fleet.pacore("export", "faults", "--no-grade").stdout.splitlines()
    ]
    (failed,) = [r for r in exported if r["status"] == "failed"]
    assert [len(x) for x in failed["round_responses"]] == [4, 1]
    assert failed["round_responses"][0] == [{"content": "", "reasoning_content": ""}] * 4
    assert failed["final_response"] == "" and failed["final_reasoning_content"] == ""
    assert assert_follows_official(failed, [{"role": "user", "content": "FAIL500 always"}], seed=42) == 1
    assert {d["error"] for d in failed["round_details"][0]} == {final}


def test_export_writes_one_line_per_run_in_the_official_format(fleet: Fleet, tmp_path: Path) -> None:
    path = problems(tmp_path, "exported", ["A", "B"])
    fleet.submit(path, "--preset", "low", "--samples", "2")
    fleet.wait_finished("exported")
    out = tmp_path / "out.jsonl"
    assert fleet.pacore("export", "exported", "-o", str(out)).returncode == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    r = records[0]
    assert r["request_id"] == "exported-0#0" and r["final_response"].startswith(" The answer is")
    assert [len(x) for x in r["round_responses"]] == [4, 1] and len(r["round_inputs"]) == 2
    assert set(r["round_responses"][0][0]) == {"content", "reasoning_content"}
    assert r["answer"] and r["ttc"] == 5 * 7 and sorted(r["round_order"][0]) == [0, 1, 2, 3]
    assert sorted(r["round_finish_order"][0]) == [0, 1, 2, 3] and r["round_order"][1] == [0]
    # graded against the problem's ground truth (FakeEngine answers the request number: mostly wrong)
    assert all(x["grade"] in ("correct", "incorrect") and x["graded_answer"] == x["answer"] for x in records)
    expected = [x["grade"] == "correct" for x in records]
    assert expected == [x["answer"] == x["ground_truth"]["answer"] for x in records]
    details = r["round_details"][0][0]
    assert (
        details["attempt"] == 1 and details["attempts_settled"] == 1 and details["compaction"] == "conclusion"
    )
    plain = tmp_path / "plain.jsonl"
    assert fleet.pacore("export", "exported", "--no-grade", "-o", str(plain)).returncode == 0
    assert all(json.loads(line)["grade"] is None for line in plain.read_text().splitlines())
    assert fleet.pacore("export", "missing").returncode == 1
