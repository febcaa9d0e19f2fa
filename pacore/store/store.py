"""`Store`: the one door to the database. It runs the named queries of `sql/*.sql` on one connection
(one transaction, opened by `Database.store()`) and returns typed rows; its methods are named after
their queries and grouped by domain. Nothing else in pacore, scheduler or worker writes SQL."""

from __future__ import annotations

from pacore.store.campaigns import CampaignQueries
from pacore.store.checkpoints import CheckpointQueries
from pacore.store.claims import ClaimQueries
from pacore.store.counters import CounterQueries
from pacore.store.dispatch import DispatchQueries
from pacore.store.endings import EndingQueries
from pacore.store.fleet import FleetQueries
from pacore.store.results import ResultQueries
from pacore.store.rounds import RoundQueries


class Store(
    ClaimQueries,
    CheckpointQueries,
    CounterQueries,
    FleetQueries,
    DispatchQueries,
    RoundQueries,
    EndingQueries,
    CampaignQueries,
    ResultQueries,
):
    pass
