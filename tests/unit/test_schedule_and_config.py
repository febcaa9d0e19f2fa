import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from pacore.core.campaign import CampaignConfig
from pacore.core.schedule import PRESETS, executed_schedule, parse_rounds, parse_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("2M", 2_000_000),
        ("500k", 500_000),
        ("2,000,000", 2_000_000),
        ("131072", 131_072),
        ("1.5M", 1_500_000),
        (" 8K ", 8_000),
    ],
)
def test_parse_tokens(text: str, tokens: int) -> None:
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("text", ["", "abc", "-5", "0", "2G", "1.5", "0.0001k"])
def test_parse_tokens_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="token"):
        parse_tokens(text)


def test_presets_and_the_implicit_final_round() -> None:
    assert [executed_schedule(PRESETS[p]) for p in ("low", "medium", "high")] == [[4, 1], [16, 1], [32, 4, 1]]


@pytest.mark.parametrize(("text", "k"), [("32,4", [32, 4]), ("8", [8]), (" 2 , 3 ", [2, 3])])
def test_parse_rounds(text: str, k: list[int]) -> None:
    assert parse_rounds(text) == k


@pytest.mark.parametrize("text", ["", "0", "4,", "a,b", "-1", "2.5"])
def test_parse_rounds_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="--rounds"):
        parse_rounds(text)


def test_campaign_seed_is_never_the_engine_sampling_seed() -> None:
    cfg = CampaignConfig(rounds=[4], model="m", seed=42)
    assert {cfg.sampling_seed(1, 1, i) for i in range(4)} == {None}


def test_reproducible_sampling_derives_a_distinct_seed_per_trajectory() -> None:
    cfg = CampaignConfig(rounds=[4], model="m", seed=42, reproducible_sampling=True)
    seeds = [cfg.sampling_seed(run, rnd, i) for run in (1, 2) for rnd in (1, 2) for i in range(4)]
    assert len(set(seeds)) == len(seeds) and 42 not in seeds
    # the same in another process, whatever its hash seed: a resumed campaign sends the same seeds
    script = (
        "from pacore.core.campaign import CampaignConfig as C; "
        "c = C(rounds=[4], model='m', seed=42, reproducible_sampling=True); "
        "print([c.sampling_seed(a, b, i) for a in (1, 2) for b in (1, 2) for i in range(4)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == str(seeds)


def test_config_rejects_a_zero_k() -> None:
    with pytest.raises(ValidationError):
        CampaignConfig(rounds=[4, 0], model="m")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"rounds": [5000]}, "rounds"),
        ({"rounds": [2] * 65}, "rounds"),
        ({"max_tokens": 2**31}, "max_tokens"),
        ({"campaign_budget": 10**20}, "campaign_budget"),
        ({"problem_budget": 10**16}, "problem_budget"),
        ({"pool": 10**6}, "pool"),
        ({"seed": 2**63}, "seed"),
    ],
)
def test_config_refuses_values_past_the_documented_maxima(config, field) -> None:
    with pytest.raises(ValidationError, match=field):
        CampaignConfig(**{"rounds": [4], "model": "m", **config})


def test_token_quantities_past_the_maximum_are_refused_with_their_text() -> None:
    assert parse_tokens("1000000000000000") == parse_tokens("1,000,000,000M") == 10**15
    with pytest.raises(ValueError, match="'99999999999999999999' is more than 1,000,000,000,000,000 tokens"):
        parse_tokens("99999999999999999999")
