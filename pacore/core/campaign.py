"""A campaign's configuration: what every run of it does. Stored as JSON in the campaign row."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from pacore.core.schedule import (
    MAX_BUDGET_TOKENS,
    MAX_K,
    MAX_POOL,
    MAX_ROUNDS,
    MAX_SAMPLES,
    MAX_TRAJECTORY_TOKENS,
    SEED_MAX,
    SEED_MIN,
    executed_schedule,
)


class CampaignConfig(BaseModel):
    rounds: list[int] = Field(
        min_length=1, max_length=MAX_ROUNDS, description="K per round, without the implicit final 1"
    )
    samples: int = Field(1, ge=1, le=MAX_SAMPLES)
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TRAJECTORY_TOKENS)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(42, ge=SEED_MIN, le=SEED_MAX)
    problem_budget: int | None = Field(None, ge=1, le=MAX_BUDGET_TOKENS)
    campaign_budget: int | None = Field(None, ge=1, le=MAX_BUDGET_TOKENS)
    pass_truncated: bool = False
    reproducible_sampling: bool = False
    # Round-1 pool: N round-1 trajectories per problem, generated once (or reused from an earlier
    # campaign with the same problem, model and sampling), from which each run samples its K1.
    pool: int | None = Field(None, ge=1, le=MAX_POOL)

    @model_validator(mode="after")
    def _positive_rounds(self) -> CampaignConfig:
        if any(k < 1 or k > MAX_K for k in self.rounds):
            raise ValueError(f"every K in rounds must be from 1 to {MAX_K:,}")
        if self.pool is not None and self.pool < self.rounds[0]:
            raise ValueError(
                f"--pool {self.pool} is smaller than round 1's K={self.rounds[0]}: a run samples K1 of it"
            )
        return self

    def pool_sample(self, run_id: int) -> list[int]:
        """Which pool positions run `run_id` uses in round 1: K1 of N, seeded, without replacement."""
        assert self.pool is not None
        import random

        return random.Random(f"{self.seed}:{run_id}").sample(range(self.pool), self.rounds[0])

    @property
    def schedule(self) -> list[int]:
        return executed_schedule(self.rounds)

    def sampling_seed(self, run_index: int, round_index: int, trajectory_index: int) -> int | None:
        """The engine's sampling seed. Never the campaign seed itself: K requests with one seed give K
        identical trajectories. Only with reproducible sampling, one derived per trajectory."""
        if not self.reproducible_sampling:
            return None
        mix = (self.seed * 1_000_003 + run_index) * 1_000_003 + round_index
        return (mix * 1_000_003 + trajectory_index) % (2**31 - 1)
