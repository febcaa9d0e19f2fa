"""A preset-low campaign on real AIME 2024 problems, two samples, two `pacore worker` processes, against
a real vLLM server: the algorithm end to end, checked from the stored rows."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO, pacore_env, pacore_executable, shared_file
from tests.official import assert_follows_official

# The scripted model's completion: "Okay , let me work through this carefully" (8 tokens), " hmm" × n,
# "</think>", " The answer is \boxed{" (4), the answer (1), "}" ".", and the end-of-sequence token.
SCRIPT_TOKENS_WITHOUT_HMM = 8 + 1 + 4 + 1 + 2 + 1


@pytest.fixture(scope="module")
def campaign(vllm_fleet, vllm_server):
    before = {m: vllm_server.metric(m) for m in ("vllm:generation_tokens_total", "vllm:prompt_tokens_total")}
    vllm_fleet.submit(
        shared_file("aime_2024.jsonl"), "--name", "aime-low", "--preset", "low", "--samples", "2"
    )
    status = vllm_fleet.wait_finished("aime-low", timeout=600)
    after = {m: vllm_server.metric(m) for m in before}
    return status, {m: after[m] - before[m] for m in before}


def test_every_run_finished_with_rounds_4_and_1(campaign, vllm_fleet) -> None:
    status, _ = campaign
    assert status["status"] == "done" and status["runs"] == {"total": 60, "done": 60}
    schedules = vllm_fleet.query(
        "SELECT array_agg(r.k ORDER BY r.index) FROM round r JOIN run ON run.id = r.run_id GROUP BY run.id"
    )
    assert len(schedules) == 60 and {tuple(s) for (s,) in schedules} == {(4, 1)}


def test_every_round_follows_the_official_rules_from_its_completion_order(vllm_fleet) -> None:
    """For every run, the official order recomputed from the export's `round_finish_order` (with the
    tests' restatement of the official code, itself checked against the golden file) gives the stored
    responses and the next round's input byte for byte. The conclusions keep their leading space."""
    problems = {
        p["id"]: p["messages"]
        for p in map(json.loads, shared_file("aime_2024.jsonl").read_text(encoding="utf-8").splitlines())
    }
    exported = vllm_fleet.pacore("export", "aime-low", "--no-grade")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == 60
    for record in records:
        assert assert_follows_official(record, problems[record["problem_id"]], seed=42) == 1
        assert "\nReference 1:\n The answer is \\boxed{" in record["round_inputs"][1][-1]["content"]


def test_round_one_trajectories_of_a_run_are_not_identical(vllm_fleet) -> None:
    per_run = vllm_fleet.query(
        "SELECT array_agg(t.reasoning || t.content) FROM trajectory t JOIN round r ON r.id = t.round_id "
        "WHERE r.index = 1 GROUP BY r.id"
    )
    assert len(per_run) == 60
    assert all(len(set(texts)) > 1 for (texts,) in per_run), "the campaign seed must not be the sampling seed"


def test_answers_are_extracted(vllm_fleet) -> None:
    answers = vllm_fleet.query("SELECT answer, final_message FROM run")
    assert {a for a, _ in answers} <= {"204", "25", "809"} and all(a for a, _ in answers)
    assert all(m == f" The answer is \\boxed{{{a}}}." for a, m in answers)  # the conclusion, unstripped


def test_stored_token_counts_equal_the_servers_usage(campaign, vllm_fleet) -> None:
    status, served = campaign
    rows = vllm_fleet.query("SELECT reasoning, content, completion_tokens, prompt_tokens FROM trajectory")
    assert len(rows) == 60 * 5
    for reasoning, _content, completion, _prompt in rows:
        assert completion == SCRIPT_TOKENS_WITHOUT_HMM + reasoning.count(" hmm")
    generated, engine = sum(r[2] for r in rows), served["vllm:generation_tokens_total"]
    lost = vllm_fleet.query(
        "SELECT count(*) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
        "WHERE t.campaign_id = %s AND a.outcome <> 'done'",
        status["id"],
    )[0][0]
    if lost == 0:
        assert generated == status["tokens"]["used"] == engine, vllm_fleet.what_happened(status["id"])
        prompt = sum(r[3] for r in rows)
        assert prompt == status["tokens"]["prompt"] == served["vllm:prompt_tokens_total"], (
            vllm_fleet.what_happened(status["id"])
        )
    else:
        # Only a worker frozen or starved past its leases may lose attempts here (a box too loaded to run
        # its heartbeat for a minute): it says so once it runs again, and each lost attempt was charged
        # all it held, so the books bound what the engine generated instead of equalling it.
        logs = "".join(log.read_text(errors="replace") for log in vllm_fleet.logs.glob("worker-*.log"))
        why = vllm_fleet.what_happened(status["id"])
        assert "heartbeat: the leases went" in logs, f"{lost} attempts lost with no late heartbeat: {why}"
        assert generated <= engine <= status["tokens"]["used"], why


def test_export_of_the_campaign(vllm_fleet, tmp_path) -> None:
    out = tmp_path / "aime.jsonl"
    assert vllm_fleet.pacore("export", "aime-low", "-o", str(out)).returncode == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 60 and {r["problem_id"] for r in records} == {
        f"aime24_{s}_{i:02d}" for s in ("I", "II") for i in range(1, 16)
    }
    r = records[0]
    assert r["final_reasoning_content"].startswith("Okay, let me work through this carefully")
    assert r["round_inputs"][1][-1]["content"].startswith(
        "You are given a problem and a list of reference responses."
    )


def test_single_box_run_on_the_embedded_default(vllm_server, tmp_path) -> None:
    """The README's main job: `pacore run` with no database or broker configured."""
    result = subprocess.run(
        [
            pacore_executable(),
            "run",
            "ops/examples/aime_2024_sample.jsonl",
            "--preset",
            "low",
            "--engine-url",
            vllm_server.url,
            "--json",
        ],
        env=pacore_env(PACORE_DATA_DIR=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["runs"] == {"total": 8, "done": 8} and all(
        a["answer"] in {"204", "25", "809"} for a in summary["answers"]
    )


def test_report_grades_against_the_ground_truth_and_plots(campaign, vllm_fleet, tmp_path) -> None:
    from collections import Counter

    from pacore.core.answers import extract_boxed

    plot = tmp_path / "accuracy.png"
    done = vllm_fleet.pacore("report", "aime-low", "--json", "--plot", str(plot), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "grading 120 answers of aime-low" in done.stderr  # 60 final answers, 60 round-1 votes
    out = json.loads(done.stdout)
    report = out["campaigns"][0]
    # Recomputed from the rows: pass@1 over problems, and the round-1 majority vote, on integer answers;
    # TTC from the trajectories' completion tokens (the run's books also hold what lost attempts held).
    rows = vllm_fleet.query(
        "SELECT p.external_id, run.id, run.answer, p.ground_truth ->> 'answer', "
        "(SELECT sum(t.completion_tokens) FROM trajectory t JOIN round r ON r.id = t.round_id WHERE r.run_id = run.id) "
        "FROM run JOIN problem p ON p.id = run.problem_id"
    )
    per_problem: dict[str, list[bool]] = {}
    votes: dict[str, list[bool]] = {}
    for problem, run_id, answer, truth, _ in rows:
        per_problem.setdefault(problem, []).append(answer is not None and int(answer) == int(truth))
        messages = [
            m
            for (m,) in vllm_fleet.query(
                "SELECT t.message FROM trajectory t JOIN round r ON r.id = t.round_id WHERE r.run_id = %s AND r.index = 1 "
                "ORDER BY t.index",
                run_id,
            )
        ]
        answers = [extract_boxed(m) for m in messages if m]
        counts = Counter(answers)
        top = next(a for a in answers if counts[a] == max(counts.values())) if answers else None
        votes.setdefault(problem, []).append(top is not None and int(top) == int(truth))
    mean = lambda groups: sum(sum(v) / len(v) for v in groups.values()) / len(groups)  # noqa: E731
    assert report["problems"] == 30 and report["runs"] == report["runs_graded"] == 60
    assert abs(report["accuracy"] - mean(per_problem)) < 1e-9
    # zero only when no run is right (the tiny model draws 204/25/809 at random: about 8% of campaigns)
    assert (report["accuracy"] > 0) == any(any(v) for v in per_problem.values())
    assert abs(report["majority_vote_accuracy"] - mean(votes)) < 1e-9
    assert report["ttc_mean"] == sum(r[4] for r in rows) / 60
    assert [r["round"] for r in report["rounds"]] == [1, 2] and report["rounds"][0]["trajectories"] == 240
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(plot).shape[2] in (3, 4)
    assert set(out["plot"]) == {"PaCoRe", "majority@K1 (round 1)"}
    ci = report["accuracy_ci95"]
    assert out["plot"]["PaCoRe"] == [[report["ttc_mean"] / 1000, report["accuracy"] * 100, "4,1", ci]]
    # the interval is over problems: it holds the mean, within the extremes a problem can have
    assert 0 <= ci[0] <= report["accuracy"] <= ci[1] <= 1
    assert out["plot"]["majority@K1 (round 1)"][0][2] == "K1=4"
