"""The integration fleet: real `pacore scheduler` and `pacore worker` processes against FakeEngine,
a real OpenAI-compatible HTTP server in the test process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

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


@pytest.fixture
def fake_fleet(
    postgres_admin, template_db, redis_available, fake_engine, tmp_path
) -> Callable[..., AbstractContextManager[Fleet]]:
    """A private fleet against the session's FakeEngine, logging to this test's tmp_path:
    `with fake_fleet(workers=0, extra_env={...}) as fleet`. Options go to `running_fleet`."""

    def make(**options: Any) -> AbstractContextManager[Fleet]:
        return running_fleet(
            postgres_admin,
            template_db,
            redis_available,
            fake_engine.url,
            fake_engine.model,
            tmp_path,
            **options,
        )

    return make
