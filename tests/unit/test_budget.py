"""Budget arithmetic: table tests, and hypothesis over random interleavings of every operation."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pacore.core.budget import (
    CampaignTokens,
    RunTokens,
    apply_finish,
    apply_grant,
    apply_reopen,
    apply_reserve,
    apply_set_budget,
    apply_settle,
    block_size,
    fair_ask,
    grant_request,
    needs_block,
    starved_end,
    take,
    wake_tokens,
)


def test_take() -> None:
    assert take(None, 100, 10) == 100
    assert take(500, 100, 10) == 100
    assert take(60, 100, 10) == 60
    assert take(5, 100, 10) == 0
    assert take(0, 100, 1) == 0
    assert take(50, 0, 1) == 0


def test_blocks_are_asked_for_ahead_and_capped_by_max_tokens() -> None:
    assert needs_block(0, 0, 8192) and not needs_block(100, 8192, 8192) and needs_block(6200, 8192, 8192)
    assert block_size(0, None, 8192) == 8192
    assert block_size(8192, 10_000, 8192) == 1808
    assert block_size(10_000, 10_000, 8192) == 0


def test_a_run_asks_for_a_large_grant_capped_by_its_problem_budget() -> None:
    assert grant_request(RunTokens(None), 8192, 131_072) == 131_072
    assert grant_request(RunTokens(2_000_000, granted=1_950_000, used=1_900_000), 8192, 131_072) == 50_000
    assert grant_request(RunTokens(None), 200_000, 131_072) == 200_000


def test_the_high_preset_fits_a_2m_budget_without_worst_case_reservation() -> None:
    """32 trajectories each reserving one 8k block take 262k of a 2M problem budget, not 32 × 131k."""
    run, campaign = RunTokens(2_000_000), CampaignTokens(None)
    held = []
    for _ in range(32):
        run, got = apply_reserve(run, 8192, 1)
        if not got:
            run, campaign, _ = apply_grant(run, campaign, grant_request(run, 8192), 1)
            run, got = apply_reserve(run, 8192, 1)
        held.append(got)
    assert held == [8192] * 32 and run.holds()


OPS = st.lists(
    st.tuples(st.sampled_from(["reserve", "settle", "finish"]), st.integers(0, 3), st.integers(1, 5000)),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    campaign_limit=st.one_of(st.none(), st.integers(0, 50_000)),
    run_limit=st.one_of(st.none(), st.integers(0, 20_000)),
    grant=st.integers(1, 10_000),
    ops=OPS,
)
def test_no_interleaving_ever_overspends(campaign_limit, run_limit, grant, ops) -> None:
    """Four runs, each with trajectories that reserve, settle (using at most what they hold) and end,
    in any order: used + reserved never exceeds the limit at any level, and usage never exceeds it."""
    campaign = CampaignTokens(campaign_limit)
    runs = [RunTokens(run_limit) for _ in range(4)]
    held: list[list[int]] = [[] for _ in range(4)]
    finished = [False] * 4
    for op, r, amount in ops:
        if finished[r]:
            continue
        if op == "reserve":
            run, got = apply_reserve(runs[r], amount, 1)
            if not got:
                run, campaign, _ = apply_grant(runs[r], campaign, grant_request(runs[r], amount, grant), 1)
                run, got = apply_reserve(run, amount, 1)
            runs[r] = run
            if got:
                held[r].append(got)
        elif op == "settle" and held[r]:
            reserved = held[r].pop()
            runs[r] = apply_settle(runs[r], reserved, min(reserved, amount))
        elif op == "finish" and not held[r]:
            runs[r], campaign = apply_finish(runs[r], campaign)
            finished[r] = True
        assert campaign.holds() and all(run.holds() for run in runs)
        live = sum(run.used for run, done in zip(runs, finished, strict=True) if not done)
        if campaign_limit is not None:
            assert campaign.used + live <= campaign_limit
        if run_limit is not None:
            assert all(run.used <= run_limit for run in runs)


def test_reopening_a_finished_run_undoes_its_finish() -> None:
    run = RunTokens(limit=1000, granted=600, used=450, reserved=0)
    campaign = CampaignTokens(limit=5000, used=1000, reserved=900)
    finished_run, finished_campaign = apply_finish(run, campaign)
    reopened_run, reopened_campaign = apply_reopen(finished_run, finished_campaign)
    # the run now holds exactly what it used as its grant; finishing again counts its usage once
    assert reopened_campaign == CampaignTokens(limit=5000, used=1000, reserved=900 - 600 + 450)
    again_run, again_campaign = apply_finish(reopened_run, reopened_campaign)
    assert (again_run, again_campaign) == (finished_run, finished_campaign)


def test_a_campaign_without_a_budget_counts_no_reservation_until_one_is_set() -> None:
    run, campaign, given = apply_grant(RunTokens(None), CampaignTokens(None), 400, 1)
    assert (run.granted, given, campaign) == (400, 400, CampaignTokens(None, used=0, reserved=0))
    run = apply_settle(replace(run, reserved=100), 100, 70)  # a block of 100, 70 of it used
    ended, campaign = apply_finish(run, campaign)
    assert campaign == CampaignTokens(None, used=70, reserved=0)
    _, campaign = apply_reopen(ended, campaign)
    assert campaign == CampaignTokens(None, used=0, reserved=0)
    # a budget set: what the unfinished runs hold granted (after their free grants went back) counts
    assert apply_set_budget(campaign, 5000, 70) == CampaignTokens(5000, used=0, reserved=70)
    assert apply_set_budget(CampaignTokens(5000, 10, 900), None, 900) == CampaignTokens(None, 10, 0)


def test_a_grant_is_at_most_an_even_share_of_what_is_left() -> None:
    assert fair_ask(131_072, None, 8, 1) == 131_072, "unlimited"
    assert fair_ask(131_072, 300_000, 8, 1) == 37_500, "8 runs share 300,000"
    assert fair_ask(10_000, 300_000, 8, 1) == 10_000, "no more than asked"
    assert fair_ask(131_072, 300_000, 1, 1) == 131_072, "the last run may take its ask"
    assert fair_ask(8_192, 1_000, 8, 8_192) == 8_192, "never below the minimum (the grant then refuses)"
    assert fair_ask(100, 0, 0, 1) == 1


def test_a_starved_run_ends_only_when_no_block_can_come() -> None:
    assert starved_end(3, None, False, 4) == (
        "out of budget: its problem budget has 3 tokens left, less than the 4 to go on"
    )
    assert wake_tokens(8192, 256) == 256 and wake_tokens(4, 256) == 4
    assert starved_end(None, 3, False, 4) is None, "other runs may end and return their grants"
    assert starved_end(None, 3, True, 4).startswith("out of budget: its campaign's budget has 3 tokens left")
    assert starved_end(100, 100, True, 4) is None, "a block is there: it is published again"
    assert starved_end(None, None, True, 4) is None
    assert starved_end(-2, None, False, 4).startswith("out of budget: its problem budget has 0 tokens left")
