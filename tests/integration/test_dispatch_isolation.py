"""A campaign whose runs cannot start never holds back the others: each run starts in a savepoint of
the dispatch transaction, and what stops it lands on that run (failed, with the reason), not on the
tick."""

from __future__ import annotations

from pathlib import Path

import psycopg

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from scheduler.rounds import start_runs


def campaign(database, tmp_path: Path, name: str) -> int:
    path = tmp_path / f"{name}.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?"}\n')
    return submit(database, path, name, CampaignConfig(rounds=[2], model="m")).campaign_id


def runs(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT c.name, run.status, run.reason FROM run JOIN campaign c ON c.id = run.campaign_id ORDER BY c.name"
        ).fetchall()


def test_a_run_the_database_refuses_fails_alone(database, database_url: str, tmp_path: Path) -> None:
    refused = campaign(database, tmp_path, "refused")
    campaign(database, tmp_path, "fine")
    with psycopg.connect(
        database_url, autocommit=True
    ) as conn:  # the database refuses this campaign's rounds
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF (SELECT campaign_id FROM run WHERE id = NEW.run_id) = {refused} THEN "
            "RAISE EXCEPTION 'integer out of range (injected)'; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON round FOR EACH ROW EXECUTE FUNCTION refuse()")
    with database.store() as store:
        started = start_runs(store, Settings(), 10)
    assert len(started) == 1 and len(started[0].trajectories) == 2, "the other campaign started"
    assert runs(database_url) == [
        ("fine", "running", None),
        ("refused", "failed", "could not start: the database refused it: integer out of range (injected)"),
    ]


def test_a_campaign_with_settings_past_the_limits_fails_its_runs_alone(
    database, database_url: str, tmp_path: Path
) -> None:
    bad = campaign(database, tmp_path, "edited")
    campaign(database, tmp_path, "fine")
    with psycopg.connect(database_url) as conn:  # edited by hand past what submit accepts
        conn.execute(
            "UPDATE campaign SET config = jsonb_set(config, '{max_tokens}', '3000000000') WHERE id = %s",
            (bad,),
        )
    with database.store() as store:
        started = start_runs(store, Settings(), 10)
    assert len(started) == 1
    assert runs(database_url) == [
        (
            "edited",
            "failed",
            "could not start: its campaign's settings are invalid: "
            "max_tokens: Input should be less than or equal to 16777216",
        ),
        ("fine", "running", None),
    ]
