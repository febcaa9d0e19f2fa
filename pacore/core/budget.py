"""Token budgets as pure arithmetic (ARCHITECTURE.md §4).

Three levels: a trajectory's `max_tokens`, a run's problem budget, a campaign's budget. Tokens are
reserved in blocks as a trajectory streams, never K × max_tokens up front. Hierarchical, so that no row
is hot: a run holds a *grant* from its campaign, taken in large blocks (the campaign row is touched once
per grant and once when the run ends), and its trajectories reserve small blocks from that grant. A
campaign without a budget counts no reservations (its runs' grants are theirs to take: no grant touches
its row); when a budget is set, its reservations are counted afresh from its runs (`apply_set_budget`).

    campaign: used + reserved <= campaign budget   (reserved = grants held by unfinished runs; 0 unlimited)
    run:      used + reserved <= granted <= problem budget   (reserved = blocks held by trajectories)

Each function here is the decision of one conditional UPDATE; the database layer applies it with the
same condition, so a decision made on a stale read simply changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_BLOCK = 8_192  # tokens a trajectory reserves at a time
DEFAULT_GRANT = 131_072  # tokens a run takes from its campaign at a time


@dataclass(frozen=True)
class CampaignTokens:
    limit: int | None
    used: int = 0  # settled usage of finished runs
    reserved: int = 0  # grants held by unfinished runs

    @property
    def available(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used - self.reserved)

    def holds(self) -> bool:
        return self.limit is None or self.used + self.reserved <= self.limit


@dataclass(frozen=True)
class RunTokens:
    limit: int | None
    granted: int = 0  # taken from the campaign and not yet returned
    used: int = 0  # settled usage of its trajectories
    reserved: int = 0  # blocks held by its running trajectories

    @property
    def free_grant(self) -> int:
        return self.granted - self.used - self.reserved

    @property
    def grantable(self) -> int | None:
        """How much more the problem budget lets this run take from its campaign."""
        return None if self.limit is None else max(0, self.limit - self.granted)

    def holds(self) -> bool:
        return self.used + self.reserved <= self.granted and (
            self.limit is None or self.granted <= self.limit
        )


def take(available: int | None, want: int, minimum: int) -> int:
    """All of `want`, else what is available when it is at least `minimum`, else nothing."""
    if want <= 0:
        return 0
    if available is None or available >= want:
        return want
    return available if available >= minimum else 0


def block_size(reserved: int, max_tokens: int | None, block: int = DEFAULT_BLOCK) -> int:
    """The next block a trajectory asks for: a full block, or what its own max_tokens still allows."""
    return block if max_tokens is None else max(0, min(block, max_tokens - reserved))


def needs_block(streamed: int, reserved: int, block: int = DEFAULT_BLOCK) -> bool:
    """Ask ahead, when a quarter of a block (at most) is left, so the stream never waits on the database."""
    return reserved - streamed <= max(1, block // 4)


def grant_request(run: RunTokens, want: int, grant: int = DEFAULT_GRANT) -> int:
    """What a run asks its campaign for when its free grant cannot cover `want` tokens."""
    size = max(grant, want - run.free_grant)
    return size if run.grantable is None else min(size, run.grantable)


def fair_ask(ask: int, available: int | None, sharing: int, minimum: int) -> int:
    """What a run may ask its campaign for: at most an even share of what is left among the `sharing`
    runs still going (itself included), so that the first runs to ask cannot hold a budget the others
    need (their grants return when they end); never less than `minimum`. Unlimited: all of `ask`."""
    if available is None:
        return ask
    return min(ask, max(minimum, available // max(1, sharing)))


def apply_grant(
    run: RunTokens, campaign: CampaignTokens, ask: int, minimum: int
) -> tuple[RunTokens, CampaignTokens, int]:
    """The campaign grants `ask` (or what it has left, if at least `minimum`) to the run."""
    given = take(campaign.available, ask, minimum)
    if given == 0 or (run.grantable is not None and given > run.grantable):
        return run, campaign, 0
    return (
        replace(run, granted=run.granted + given),
        _reserved(campaign, campaign.reserved + given),
        given,
    )


def _reserved(campaign: CampaignTokens, reserved: int) -> CampaignTokens:
    """The campaign's reservations changed to `reserved`: a campaign without a budget counts none."""
    return replace(campaign, reserved=0 if campaign.limit is None else reserved)


def apply_set_budget(campaign: CampaignTokens, limit: int | None, granted: int) -> CampaignTokens:
    """The campaign's budget becomes `limit`; its reservations are the grants its unfinished runs hold
    (`granted`, after their free grants were taken back), counted afresh."""
    return _reserved(replace(campaign, limit=limit), granted)


def apply_reserve(run: RunTokens, want: int, minimum: int) -> tuple[RunTokens, int]:
    """A trajectory reserves `want` (or the rest of the grant, if at least `minimum`) from its run."""
    given = take(run.free_grant, want, minimum)
    return (replace(run, reserved=run.reserved + given), given) if given else (run, 0)


def apply_settle(run: RunTokens, reserved: int, used: int) -> RunTokens:
    """An attempt ends: its reservation becomes its actual usage (never more than it reserved)."""
    assert 0 <= used <= reserved, "a trajectory never streams past its reservation"
    return replace(run, used=run.used + used, reserved=run.reserved - reserved)


def apply_reopen(run: RunTokens, campaign: CampaignTokens) -> tuple[RunTokens, CampaignTokens]:
    """A finished run is reopened (retried): the inverse of `apply_finish`. Its usage goes back from the
    campaign's used to a grant the run holds, so finishing it again counts it once."""
    campaign = _reserved(replace(campaign, used=campaign.used - run.used), campaign.reserved + run.used)
    return replace(run, granted=run.used), campaign


def apply_finish(run: RunTokens, campaign: CampaignTokens) -> tuple[RunTokens, CampaignTokens]:
    """A run ends (no trajectory holds a block): its usage moves to the campaign and its grant returns."""
    assert run.reserved == 0
    campaign = _reserved(replace(campaign, used=campaign.used + run.used), campaign.reserved - run.granted)
    return replace(run, granted=run.used), campaign


def wake_tokens(block: int, min_trajectory: int) -> int:
    """The room a trajectory waiting for budget needs before it is published again: a block, or the
    least a trajectory is started with when that is smaller (a problem budget under one block)."""
    return min(block, min_trajectory)


def starved_end(own: int | None, shared: int | None, all_starved: bool, wake: int) -> str | None:
    """A run whose trajectories all wait for budget: why it ends `budget_exhausted`, or None while it may
    still get the `wake` tokens that publish a waiting trajectory again. Its own problem budget with less
    left can give it none; its campaign's can, when other runs end and return their grants, unless every
    run of it waits too. (`own`, `shared`: what is left to it at each level; None: unlimited.)"""
    if own is not None and own < wake:
        return (
            f"out of budget: its problem budget has {max(0, own)} tokens left, less than the {wake} to go on"
        )
    if shared is not None and shared < wake and all_starved:
        return (
            f"out of budget: its campaign's budget has {max(0, shared)} tokens left, less than the {wake} to "
            "go on, and every run of it waits for budget"
        )
    return None
