"""The example Grafana dashboard only queries metrics pacore exports."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import pacore.metrics  # noqa: F401  (registers the metrics)
from tests.conftest import REPO


def test_every_metric_the_dashboard_queries_exists() -> None:
    dashboard = json.loads((REPO / "ops/grafana/pacore.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(pacore_[a-z_]+)", target["expr"])
    }
    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    exported |= {family.name for family in REGISTRY.collect()}
    exported |= {f"{family.name}_total" for family in REGISTRY.collect() if family.type == "counter"}
    assert queried and queried <= exported, queried - exported
