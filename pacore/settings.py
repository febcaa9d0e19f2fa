"""The one settings object, read from PACORE_* environment variables (and a .env file) at start-up.

It is built by the CLI (or a test) and passed down; nothing builds it at import time.

Secrets (the database and broker URLs, which carry passwords, and the engine's API key) come from the
environment or from files: PACORE_DATABASE_URL_FILE=/run/secrets/db reads the value from that file
(Docker and Kubernetes secrets). They are never command-line options, and never logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pacore.core.urls import engine_root

SECRETS = ("database_url", "broker_url", "result_backend", "engine_api_key")


# Tokens per streamed chunk a worker asks for: the sweep in ops/bench/end_to_end.py chose it.
DEFAULT_STREAM_INTERVAL = 64


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PACORE_", env_file=".env", extra="ignore")

    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL. Unset: an embedded PostgreSQL in data_dir."
    )
    data_dir: Path = Field(
        Path.home() / ".local" / "share" / "pacore",
        description="Local state: the embedded PostgreSQL's data folder (data_dir/postgres).",
    )
    broker_url: SecretStr | None = Field(
        None, description="Celery broker, e.g. redis://host:6379/0. Unset: the database itself."
    )
    result_backend: SecretStr | None = Field(
        None, description="Celery result backend. Unset: Redis when the broker is Redis, else the database."
    )
    model: str = Field("stepfun-ai/PaCoRe-8B", description="Default served model name for new campaigns.")
    engine_url: str | None = Field(None, description="The OpenAI-compatible engine a worker talks to.")
    engine_api_key: SecretStr | None = Field(
        None, description="API key of the engine (vllm serve --api-key)."
    )
    engine_timeout: float = Field(
        600.0, description="Seconds without a byte from the engine before giving up."
    )
    stream_interval: int = Field(
        DEFAULT_STREAM_INTERVAL,
        ge=1,
        le=4096,
        description="Tokens per streamed chunk a worker asks the engine for (vLLM's stream_interval): "
        "fewer chunks cost the engine less; cancel, drain and checkpoints act per chunk.",
    )
    first_token_timeout: float = Field(
        1800.0, gt=0, description="Seconds a request may wait for its first token (requests may queue)."
    )
    idle_timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds a stream may go without a token once it began (keep-alives do not count).",
    )
    engine_retries: int = Field(6, ge=1, description="Tries per generation for transient engine faults.")
    engine_retry_deadline: float = Field(
        900.0, gt=0, description="Seconds after which a generation stops retrying."
    )
    engine_retry_initial: float = Field(
        1.0, gt=0, description="First backoff in seconds (doubles, jittered, to 60)."
    )
    token_block: int = Field(
        8192, ge=1, description="Tokens a trajectory reserves at a time while it streams."
    )
    token_grant: int = Field(
        131072, ge=1, description="Tokens a run takes from its campaign budget at a time."
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts a trajectory's own request may fail (the engine's errors after the attempt's "
        "retries) before the trajectory fails with the last error.",
    )
    min_trajectory_tokens: int = Field(256, ge=1, description="The least a final trajectory is started with.")
    worker_concurrency: int = Field(64, ge=1, description="Concurrent generations per worker process.")
    lease_seconds: int = Field(60, ge=5, description="How long a claimed trajectory stays leased.")
    heartbeat_seconds: float = Field(
        5.0, gt=0, description="How often a worker extends its leases and writes its checkpoints."
    )
    drain_grace_seconds: float = Field(
        25.0,
        gt=0,
        description="On SIGTERM, generations that will not end within this hand their trajectory back.",
    )
    engine_health_seconds: float = Field(
        5.0, gt=0, description="How often a worker checks that its engine answers /health."
    )
    db_outage_seconds: float = Field(
        120.0, gt=0, description="How long a worker waits out an unreachable PostgreSQL before giving up."
    )
    reconcile_interval: float = Field(30.0, gt=0, description="Seconds between reconciler passes.")
    republish_after: int = Field(
        6 * 3600,
        ge=1,
        description="Re-publish a pending trajectory whose message is older than this (seconds).",
    )
    admission_factor: float = Field(
        2.0, gt=0, description="Keep this many times the live fleet's generation slots in flight, at most."
    )
    admission_floor: int = Field(
        64, ge=1, description="In flight allowed whatever the fleet (a fleet starting, or none registered)."
    )
    dispatch_interval: float = Field(1.0, gt=0, description="Seconds between scheduler dispatch ticks.")
    dispatch_batch: int = Field(256, ge=1, description="Runs started per dispatch tick at most.")
    log_level: str = Field("INFO", description="Log level of pacore processes.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text, or json: one object per line with campaign, run, trajectory and attempt ids.",
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port (workers, scheduler)."
    )
    metrics_address: str = Field(
        "127.0.0.1",
        description="The address the metrics port listens on: this host only, unless told (0.0.0.0 for a "
        "Prometheus elsewhere; the metrics have no authentication).",
    )

    @field_validator("engine_url")
    @classmethod
    def _engine_root(cls, url: str | None) -> str | None:
        return None if url is None else engine_root(url)

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        for name in SECRETS:
            variable = f"PACORE_{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path:
                continue
            if getattr(self, name) is not None:
                raise ValueError(f"both PACORE_{name.upper()} and {variable} are set: keep one")
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise ValueError(f"{variable}={path}: cannot read it ({exc.strerror})") from exc
            if not value:
                raise ValueError(f"{variable}={path}: the file is empty")
            setattr(self, name, SecretStr(value))
        return self
