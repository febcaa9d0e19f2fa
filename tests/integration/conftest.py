"""The integration fleet: real `pacore scheduler` and `pacore worker` processes against FakeEngine,
a real OpenAI-compatible HTTP server in the test process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_engine import FakeEngine
from tests.fleet import Fleet, running_fleet


@pytest.fixture(scope="session")
def fake_engine() -> Iterator[FakeEngine]:
    with FakeEngine() as engine:
        yield engine


@pytest.fixture(scope="session")
def fleet(postgres_admin, template_db, redis_available, fake_engine, tmp_path_factory) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("fleet-logs")
    with running_fleet(
        postgres_admin, template_db, redis_available, fake_engine.url, fake_engine.model, logs
    ) as fleet:
        fleet.engine_ref = fake_engine
        yield fleet
