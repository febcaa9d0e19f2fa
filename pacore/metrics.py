"""Prometheus metrics (prometheus-client). A process serves them on PACORE_METRICS_PORT when it is set
(`pacore worker`, `pacore scheduler`); an example Grafana dashboard is ops/grafana/pacore.json.

Workers count what they do as they do it; the scheduler refreshes campaign-level gauges from the
database once per dispatch tick (one grouped query), so a scrape never touches the database.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from pacore.core.vocabulary import TrajectoryStatus

if TYPE_CHECKING:
    from pacore.store.store import Store

log = logging.getLogger("pacore.metrics")

# -- workers ----------------------------------------------------------------------------------------
GENERATED_TOKENS = Counter("pacore_generated_tokens", "Completion tokens streamed from the engine.")
ACTIVE_GENERATIONS = Gauge("pacore_active_generations", "Generations this process is streaming.")
ENGINE_ERRORS = Counter("pacore_engine_errors", "Engine failures by kind (retried or not).", ["kind"])
CHECKPOINT_CHUNKS = Counter("pacore_checkpoint_chunks", "Checkpoint chunk rows written.")
HANDED_BACK = Counter("pacore_handed_back", "Trajectories given back, by reason.", ["reason"])
ATTEMPTS = Counter("pacore_attempts", "Attempts ended, by outcome.", ["outcome"])

# -- scheduler --------------------------------------------------------------------------------------
TRAJECTORIES = Gauge("pacore_trajectories", "Trajectories by campaign and status.", ["campaign", "status"])
TOKENS = Gauge(
    "pacore_campaign_tokens", "Campaign tokens by kind (used, reserved, wasted).", ["campaign", "kind"]
)
NO_MESSAGE = Gauge(
    "pacore_compaction_no_message_share",
    "Share of finished trajectories that contributed no message (compaction health).",
    ["campaign"],
)
ROUND_HOP = Histogram(
    "pacore_round_hop_seconds",
    "From a round's last trajectory finished to its next round published.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ADMISSION = Gauge("pacore_admission", "Admission control: capacity, in flight, room.", ["kind"])


def serve(port: int | None, address: str = "127.0.0.1") -> None:
    """Serve /metrics on `port` of `address` (PACORE_METRICS_ADDRESS: this host only by default; the
    metrics have no authentication). A port already taken (several pacore processes on one host given the
    same PACORE_METRICS_PORT) is reported and skipped: metrics never stop a worker."""
    if not port:
        return
    try:
        start_http_server(port, addr=address)
    except OSError as exc:
        log.warning(
            "metrics not served: port %d: %s (give each process its own PACORE_METRICS_PORT)", port, exc
        )
        return
    log.info("metrics on %s:%d/metrics", address, port)


def refresh_campaign_gauges(store: Store) -> None:
    """Per active or paused campaign: trajectories by status, tokens, compaction health."""
    TRAJECTORIES.clear()
    done: dict[str, tuple[int, int]] = {}
    for name, status, count, empty in store.gauge_trajectories():
        TRAJECTORIES.labels(name, status).set(count)
        if status == TrajectoryStatus.DONE:
            done[name] = (count, empty)
    NO_MESSAGE.clear()
    for name, (count, empty) in done.items():
        NO_MESSAGE.labels(name).set(empty / count if count else 0.0)
    TOKENS.clear()
    for name, used, reserved, wasted in store.gauge_tokens():
        TOKENS.labels(name, "used").set(used)
        TOKENS.labels(name, "reserved").set(reserved)
        TOKENS.labels(name, "wasted").set(wasted)
