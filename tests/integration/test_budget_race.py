"""Many workers race for the last tokens of a budget on a real PostgreSQL: nothing ever overspends.

Each repetition: a campaign of 3 runs (problem budget 240 each, campaign budget 500) whose 18
trajectories stream at once from 18 threads, each reserving blocks of random size and settling a random
part of them, until refused; a monitor samples the invariant while they race.
"""

import random
import threading
from pathlib import Path

from sqlalchemy import text

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.database import Database
from scheduler.rounds import start_runs
from worker import claims
from worker.engine import GenerationResult

REPETITIONS = 100
CAMPAIGN_BUDGET, PROBLEM_BUDGET, GRANT = 500, 240, 64


def violations(db: Database, campaign_id: int) -> list[str]:
    with db.engine.begin() as session:
        c_used, c_reserved = session.execute(
            text("SELECT tokens_used, tokens_reserved FROM campaign WHERE id = :c"), {"c": campaign_id}
        ).one()
        runs = session.execute(
            text("SELECT id, tokens_used, tokens_reserved, tokens_granted FROM run WHERE campaign_id = :c"),
            {"c": campaign_id},
        ).all()
    found = []
    if c_used + c_reserved > CAMPAIGN_BUDGET:
        found.append(f"campaign {c_used} + {c_reserved} > {CAMPAIGN_BUDGET}")
    for run_id, used, reserved, granted in runs:
        if used + reserved > granted or granted > PROBLEM_BUDGET:
            found.append(f"run {run_id}: used {used} + reserved {reserved}, granted {granted}")
    if sum(r[1] for r in runs) > CAMPAIGN_BUDGET:
        found.append("runs together used more than the campaign budget")
    return found


def stream(db: Database, claim: claims.Claim, seed: int) -> int:
    rng = random.Random(seed)
    reserved = used = 0
    while True:
        with db.store() as store:
            got = budgets.reserve(store, claim.holder, rng.randint(5, 40), used, GRANT, reserved)
        if not got:
            break
        reserved += got
        used += rng.randint(0, got)
    # Half the attempts end with a result, half are handed back: both settle in their one statement.
    if seed % 2:
        result = GenerationResult(" \\boxed{1}", "", "stop", 0, used)
        assert claims.finish(db, claim, "w", result, None, claims.Spent(used, 0, 0))
    else:
        assert claims.hand_back(db, claim, "w", claims.Spent(used, 0, 0), "drained")
    return used


def race(db: Database, held: list, seed: int) -> list[int]:
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda c=c, s=seed * 100 + i: results.append(stream(db, c, s)))
        for i, c in enumerate(held)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_workers_never_overspend(database_url: str, tmp_path: Path) -> None:
    from pacore.store.database import normalize_url

    db = Database(normalize_url(database_url), pool_size=20)
    settings = Settings(token_block=8)
    path = tmp_path / "three.jsonl"
    path.write_text("".join(f'{{"id": "p{i}", "problem": "P{i}"}}\n' for i in range(3)))
    found: list[str] = []
    for rep in range(REPETITIONS):
        cfg = CampaignConfig(
            rounds=[6], model="m", problem_budget=PROBLEM_BUDGET, campaign_budget=CAMPAIGN_BUDGET
        )
        campaign_id = submit(db, path, f"race{rep}", cfg).campaign_id
        with db.store() as store:
            publishes = start_runs(store, settings, 10)
        held = [claims.claim(db, tid, 1, f"w{tid}", 60) for p in publishes for tid, _ in p.trajectories]
        assert len(held) == 18 and all(held)
        done = threading.Event()

        def monitor(campaign_id: int = campaign_id, done: threading.Event = done) -> None:
            while not done.is_set():
                found.extend(violations(db, campaign_id))

        watcher = threading.Thread(target=monitor)
        watcher.start()
        results = race(db, held, seed=rep)
        done.set()
        watcher.join()
        found.extend(violations(db, campaign_id))
        assert len(results) == 18
        with db.engine.begin() as session:
            spent, granted = session.execute(
                text(
                    "SELECT sum(r.tokens_used), c.tokens_reserved FROM run r JOIN campaign c ON c.id = r.campaign_id "
                    "WHERE c.id = :c GROUP BY c.tokens_reserved"
                ),
                {"c": campaign_id},
            ).one()
        assert spent == sum(results), "every token settled exactly once"
        assert granted == CAMPAIGN_BUDGET, "the racers really did reach the end of the campaign budget"
    db.dispose()
    assert found == [], found[:10]
