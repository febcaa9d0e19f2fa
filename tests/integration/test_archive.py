"""`pacore archive`: a finished campaign to compressed JSONL, then its text out of the database."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.integration.conftest import Fleet


def test_archive_writes_the_export_compressed_then_purges_only_the_text(fleet: Fleet, tmp_path: Path) -> None:
    problems = tmp_path / "arch.jsonl"
    problems.write_text(
        "".join(json.dumps({"id": f"a{i}", "problem": f"problem {i}"}) + "\n" for i in range(3))
    )
    fleet.submit(problems, "--preset", "low")
    before = fleet.wait_finished("arch")
    exported = fleet.pacore("export", "arch").stdout.splitlines()
    reported = json.loads(fleet.pacore("report", "arch", "--json").stdout)["campaigns"][0]

    out = tmp_path / "arch.jsonl.gz"
    done = fleet.pacore("archive", "arch", "--output", str(out), "--purge")
    assert done.returncode == 0, done.stderr
    assert "archived 3 runs" in done.stdout and "purged the text of 15 trajectories" in done.stdout
    with gzip.open(out, "rt") as f:
        assert f.read().splitlines() == exported, "the archive is the export, whole"
    assert not (tmp_path / "arch.jsonl.gz.partial").exists()

    cid = before["id"]
    left = fleet.query(
        "SELECT count(*) FILTER (WHERE content IS NOT NULL OR reasoning IS NOT NULL), count(*) "
        "FROM trajectory WHERE campaign_id = %s",
        cid,
    )[0]
    assert left == (0, 15)
    after = json.loads(fleet.pacore("status", "arch", "--json").stdout)
    assert after["runs"] == before["runs"] and after["tokens"] == before["tokens"], "counts and tokens stay"
    answers = fleet.query("SELECT count(*) FROM run WHERE campaign_id = %s AND answer IS NOT NULL", cid)[0][0]
    assert answers == 3

    # the report computes what the kept rows allow, and says what it cannot
    purged = json.loads(fleet.pacore("report", "arch", "--json").stdout)["campaigns"][0]
    kept = ("accuracy", "accuracy_ci95", "no_answer_rate", "ttc_mean", "ttc_quantiles", "runs_graded")
    assert {k: purged[k] for k in kept} == {k: reported[k] for k in kept}
    assert reported["majority_vote_accuracy"] is not None and reported["rounds"]
    assert purged["majority_vote_accuracy"] is None and purged["rounds"] == []
    assert f"purged after archiving to {out}" in purged["text_purged"]
    human = fleet.pacore("report", "arch")
    assert human.returncode == 0 and "the majority vote and the per-round health need it" in human.stdout

    again = fleet.pacore("archive", "arch", "--output", str(tmp_path / "again.jsonl.gz"))
    assert again.returncode != 0 and "its text purged: that file is its archive" in again.stderr
    assert not (tmp_path / "again.jsonl.gz").exists()


def test_archive_refuses_an_unfinished_campaign_and_an_existing_file(fleet: Fleet, tmp_path: Path) -> None:
    problems = tmp_path / "slowarch.jsonl"
    problems.write_text(json.dumps({"id": "s", "problem": "SLOW1500 a slow problem"}) + "\n")
    fleet.submit(problems, "--preset", "low")
    refused = fleet.pacore("archive", "slowarch", "--output", str(tmp_path / "x.jsonl.gz"))
    assert refused.returncode != 0 and "is active: only a finished campaign" in refused.stderr
    assert not (tmp_path / "x.jsonl.gz").exists()
    fleet.wait_finished("slowarch")
    taken = tmp_path / "taken.jsonl.gz"
    taken.write_text("keep me")
    refused = fleet.pacore("archive", "slowarch", "--output", str(taken))
    assert refused.returncode != 0 and "exists: choose another output file" in refused.stderr
    assert taken.read_text() == "keep me"


def test_the_default_archive_file_is_named_from_the_id_never_from_the_name(
    fleet: Fleet, tmp_path: Path
) -> None:
    problems = tmp_path / "named.jsonl"
    problems.write_text(json.dumps({"id": "n", "problem": "a problem"}) + "\n")
    campaign_id = fleet.submit(problems, "--preset", "low", "--name", "../../escaped")["campaign_id"]
    fleet.wait_finished("../../escaped")
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    done = fleet.pacore("archive", "../../escaped", cwd=here)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in here.iterdir()) == [f"campaign-{campaign_id}.jsonl.gz"]
    assert not list(tmp_path.glob("escaped*")), "nothing written where the name points"
