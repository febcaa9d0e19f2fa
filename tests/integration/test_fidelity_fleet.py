"""Fidelity on real worker processes: golden cases (produced by the official PaCoRe code) run as
campaigns on a fleet against a scripted engine that releases a round's response n+1 only after the
test has seen response n committed. Completion order is thus the golden `finish_rank`, set through the
real path (stream end → fenced result write → finish_seq), and every round input, stored response order
and final response must match the official output byte for byte.

The sample: every case with an all-empty round, every multi-turn case (more than one user message) and
every case with a length tie between different texts. Cases whose round inputs coincide (the engine
could not tell their requests apart) go to different waves."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_file
from tests.fake_engine import FakeEngine

WAIT_SECONDS = 600


class GatedEngine(FakeEngine):
    """Answers each scripted round input with that round's golden responses, the n-th arrival getting
    the response that finished n-th, once the test has released it. An unscripted input is refused:
    pacore sent a round input the official pipeline would not have."""

    def __init__(self, script: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(model="golden-model")
        self.script = script
        self.arrivals: Counter[str] = Counter()
        self.released: Counter[str] = Counter()
        self.unscripted: list[Any] = []
        self.gate = threading.Condition()

    @staticmethod
    def key(messages: list[dict[str, Any]]) -> str:
        return json.dumps(messages, sort_keys=True, ensure_ascii=False)

    def release(self, key: str) -> None:
        with self.gate:
            self.released[key] += 1
            self.gate.notify_all()

    def handle(self, handler: Any, body: dict[str, Any]) -> None:
        key = self.key(body["messages"])
        if key not in self.script:
            self.unscripted.append(body["messages"])
            handler.send_json(400, {"error": {"message": "unscripted round input", "code": 400}})
            return
        with self.gate:
            n = self.arrivals[key]
            self.arrivals[key] += 1
            if not self.gate.wait_for(lambda: self.released[key] > n, timeout=WAIT_SECONDS):
                return
        response = self.script[key][n]
        pieces = [{"reasoning": response["reasoning_content"]}] if response["reasoning_content"] else []
        pieces += [{"content": response["content"]}] if response["content"] else []
        self._stream(handler, 1, pieces, None, None, 0.0, None)


def sample() -> list[dict[str, Any]]:
    with shared_file("fidelity_golden.jsonl").open(encoding="utf-8") as f:
        cases = [json.loads(line) for line in f]

    def all_empty(case: dict[str, Any]) -> bool:
        return any(all(r["content"] == "" for r in rnd) for rnd in case["responses"][:-1])

    def multi_turn(case: dict[str, Any]) -> bool:
        return sum(m.get("role") == "user" for m in case["messages"]) > 1

    def tie(case: dict[str, Any]) -> bool:
        for rnd in case["responses"]:
            texts: dict[int, set[str]] = defaultdict(set)
            for r in rnd:
                texts[len(r["content"])].add(r["content"])
            if any(len(t) > 1 for t in texts.values()):
                return True
        return False

    return [c for c in cases if all_empty(c) or multi_turn(c) or tie(c)]


def waves(cases: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Greedy: a case joins the first wave where none of its round inputs is already scripted."""
    out: list[tuple[set[str], list[dict[str, Any]]]] = []
    for case in cases:
        keys = {GatedEngine.key(m) for m in case["expected"]["round_inputs"]}
        wave = next((w for w in out if not keys & w[0]), None)
        if wave is None:
            wave = (set(), [])
            out.append(wave)
        wave[0].update(keys)
        wave[1].append(case)
    return [w[1] for w in out]


def script_of(cases: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    script = {}
    for case in cases:
        for inputs, responses in zip(case["expected"]["round_inputs"], case["responses"], strict=True):
            script[GatedEngine.key(inputs)] = sorted(responses, key=lambda r: r["finish_rank"])
    return script


def test_a_sample_of_golden_cases_matches_through_real_workers(
    postgres_admin, template_db, redis_available, tmp_path: Path
) -> None:
    from tests.fleet import running_fleet

    cases = sample()
    assert len(cases) >= 100 and any(len(c["rounds"]) == 3 for c in cases)
    checked = 0
    for number, wave in enumerate(waves(cases)):
        engine = GatedEngine(script_of(wave))
        with (
            engine,
            running_fleet(
                postgres_admin,
                template_db,
                redis_available,
                engine.url,
                engine.model,
                tmp_path,
                concurrency=64,
                extra_env={"PACORE_ENGINE_TIMEOUT": str(WAIT_SECONDS)},
            ) as fleet,
        ):
            names = submit_wave(fleet, wave, tmp_path / f"wave{number}")
            release_in_finish_order(fleet, engine, wave, names)
            assert engine.unscripted == []
            checked += compare_exports(fleet, wave, names)
    assert checked == len(cases)


def submit_wave(fleet: Any, wave: list[dict[str, Any]], folder: Path) -> list[str]:
    """One campaign per (schedule, seed): those are campaign settings."""
    folder.mkdir()
    groups: dict[tuple[tuple[int, ...], int], list[dict[str, Any]]] = defaultdict(list)
    for case in wave:
        groups[(tuple(case["rounds"]), case["seed"])].append(case)
    names = []
    for (rounds, seed), group in groups.items():
        name = f"{folder.name}-{'-'.join(map(str, rounds))}-s{seed}"
        path = folder / f"{name}.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": c["id"], "messages": c["messages"]}, ensure_ascii=False) + "\n"
                for c in group
            ),
            encoding="utf-8",
        )
        fleet.submit(path, "--name", name, "--rounds", ",".join(map(str, rounds)), "--seed", str(seed))
        names.append(name)
    return names


def release_in_finish_order(
    fleet: Any, engine: GatedEngine, wave: list[dict[str, Any]], names: list[str]
) -> None:
    """Release a round's next response once every response released before it is committed."""
    keys = {c["id"]: [GatedEngine.key(m) for m in c["expected"]["round_inputs"]] for c in wave}
    total = sum(sum(c["rounds"]) + 1 for c in wave)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rows = fleet.query(
            "SELECT p.external_id, r.index, r.k, count(*) FILTER (WHERE t.status IN ('done', 'failed')) "
            "FROM round r JOIN run ON run.id = r.run_id JOIN problem p ON p.id = run.problem_id "
            "JOIN trajectory t ON t.round_id = r.id GROUP BY 1, 2, 3"
        )
        if sum(finished for *_, finished in rows) == total:
            return
        for case_id, index, k, finished in rows:
            key = keys[case_id][index - 1]
            if engine.released[key] == finished < k:
                engine.release(key)
        assert time.monotonic() < deadline, (
            f"the golden campaigns {names} did not finish; logs in {fleet.logs}"
        )
        time.sleep(0.05)  # poll interval of the condition above


def compare_exports(fleet: Any, wave: list[dict[str, Any]], names: list[str]) -> int:
    by_id = {c["id"]: c for c in wave}
    compared = 0
    for name in names:
        exported = fleet.pacore("export", name, "--no-grade")
        assert exported.returncode == 0, exported.stderr
        for line in exported.stdout.splitlines():
            record = json.loads(line)
            expected = by_id[record["problem_id"]]["expected"]
            # a final response without a conclusion (the official `final_response` is empty) is no answer
            assert record["status"] == ("done" if expected["final_response"] else "no_conclusion"), record[
                "reason"
            ]
            for key in ("round_inputs", "round_responses", "final_response", "final_reasoning_content"):
                got, want = (json.dumps(x[key], ensure_ascii=False) for x in (record, expected))
                assert got == want, f"{record['problem_id']}: {key} differs"
            compared += 1
    return compared


pytestmark = pytest.mark.integration
