"""One typed settings class for the API, the worker and the CLI (environment prefix MODELKILN_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HEARTBEAT_MISSES = 3  # heartbeats a worker may miss before it counts as gone


class Settings(BaseSettings):
    """Every knob, read from the environment (``MODELKILN_*``) or a ``.env`` file.

    With nothing set, everything lives under ``MODELKILN_HOME`` (``.modelkiln/``): a SQLite
    job store, an embedded SQLite broker and the artifact folder — embedded mode. Set
    ``MODELKILN_BROKER_URL=redis://…`` and ``MODELKILN_DATABASE_URL=postgresql://…`` to run
    the same code distributed.
    """

    model_config = SettingsConfigDict(env_prefix="MODELKILN_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".modelkiln"), description="Root of all local state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the job store; default SQLite in home."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; default an embedded SQLite broker in home."
    )
    artifacts_dir: Path | None = Field(
        default=None,
        description="Checkpoints, images, uploads; default home/artifacts. Must be "
        "shared by the API and every worker.",
    )
    data_dir: Path | None = Field(
        default=None, description="Folder with mnist/ and fashion_mnist/ IDX files."
    )
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="Upload cap.")
    visibility_timeout_s: int = Field(
        default=24 * 3600, ge=60, description="Redis visibility timeout; above the longest job."
    )
    event_flush_interval_s: float = Field(
        default=0.25, gt=0, le=10, description="How often a worker writes buffered events."
    )
    worker_queues: str = Field(
        default="cpu", description="Comma-separated queues a worker consumes: cpu, gpu."
    )
    model_cache_size: int = Field(default=8, ge=1, le=256, description="Loaded models kept.")
    auto_queue: Literal["cpu", "gpu"] = Field(
        default="cpu",
        description="Queue for jobs with device=auto: set gpu when GPU workers serve the gpu "
        "queue (device=cuda always goes to gpu, device=cpu to cpu).",
    )
    max_samples: int = Field(
        default=1024, ge=1, le=65536, description="Largest n for GET /v1/jobs/{id}/samples."
    )
    sse_poll_interval_s: float = Field(
        default=0.2, gt=0, le=5, description="How often an event stream polls the store."
    )
    heartbeat_interval_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How often a worker refreshes its heartbeat row in the job store; one "
        "silent for 3 intervals counts as gone (/readyz, the modelkiln_workers metric).",
    )
    readiness_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="How long /readyz waits for a worker to answer."
    )

    @model_validator(mode="after")
    def _defaults_under_home(self) -> Settings:
        if self.artifacts_dir is None:
            self.artifacts_dir = self.home / "artifacts"
        return self

    @property
    def worker_stale_after_s(self) -> float:
        """A worker whose heartbeat is older than this is taken for gone (three missed beats,
        so one slow write of the store does not drop it)."""
        return HEARTBEAT_MISSES * self.heartbeat_interval_s

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'modelkiln.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.home / 'broker.db').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("sqla+")

    @property
    def artifacts(self) -> Path:
        assert self.artifacts_dir is not None
        return self.artifacts_dir

    @property
    def runs_dir(self) -> Path:
        return self.artifacts / "runs"

    @property
    def uploads_dir(self) -> Path:
        return self.artifacts / "datasets"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
