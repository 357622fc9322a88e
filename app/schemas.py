"""Request and response bodies of the HTTP API, named by role (``JobCreate``, ``JobPublic``, …)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.store import DatasetRecord, EventKind, EventRecord, JobRecord, JobStatus
from ml.specs import AnySpec, ModelKind, TrainSpec

__all__ = [
    "JobCreate",
    "JobPublic",
    "JobsPublic",
    "JobStatus",
    "ModelKind",
]

# The request body of POST /v1/jobs: the spec union from ml.specs, discriminated on "model".
JobCreate = TrainSpec


class SampleFormat(StrEnum):
    png = "png"
    json = "json"
    npy = "npy"


class LossFormat(StrEnum):
    json = "json"
    csv = "csv"


class DatasetSource(StrEnum):
    builtin = "builtin"
    upload = "upload"


class JobPublic(BaseModel):
    """A job as clients see it: what was asked, where it is, how it is doing."""

    id: str
    name: str | None
    model: ModelKind
    status: JobStatus
    dataset: str = Field(description="The built-in dataset name, or upload:<id>.")
    spec: AnySpec = Field(description="The full request, defaults filled in.")
    step: int = Field(description="Optimisation steps done.")
    total_steps: int = Field(description="Steps planned (0 until the job starts).")
    epoch: int
    progress: float = Field(ge=0, le=1, description="step / total_steps.")
    metrics: dict[str, float] = Field(description="The latest value of each metric.")
    best_metrics: dict[str, float] = Field(
        description="The best value of each loss (lowest) and accuracy (highest)."
    )
    error: str | None
    worker: str | None = Field(description="The worker that runs or ran it.")
    device: str | None = Field(description="What it runs on, e.g. cpu or cuda:0.")
    requested_device: str
    queue: str = Field(description="The Celery queue it was sent to: cpu or gpu.")
    cancel_requested: bool
    attempts: int = Field(description="How many times a worker started it.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_record(cls, job: JobRecord) -> JobPublic:
        progress = min(1.0, job.step / job.total_steps) if job.total_steps else 0.0
        if job.status is JobStatus.succeeded:
            progress = 1.0
        return cls(
            id=job.id,
            name=job.name,
            model=ModelKind(job.model),
            status=job.status,
            dataset=job.dataset,
            spec=job.spec,
            step=job.step,
            total_steps=job.total_steps,
            epoch=job.epoch,
            progress=progress,
            metrics=job.metrics,
            best_metrics=job.best_metrics,
            error=job.error,
            worker=job.worker,
            device=job.device,
            requested_device=job.requested_device,
            queue=job.queue,
            cancel_requested=job.cancel_requested,
            attempts=job.attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobsPublic(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    data: list[JobPublic]
    count: int = Field(description="Jobs on this page.")
    next_cursor: str | None = Field(description="null on the last page.")


class EventPublic(BaseModel):
    """One event of a job, numbered by ``seq`` (1, 2, 3, … per job)."""

    seq: int
    kind: EventKind
    step: int
    epoch: int
    total_steps: int
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_record(cls, ev: EventRecord) -> EventPublic:
        return cls(
            seq=ev.seq,
            kind=EventKind(ev.kind),
            step=ev.step,
            epoch=ev.epoch,
            total_steps=ev.total_steps,
            data=ev.data,
            created_at=ev.created_at,
        )


class LossPoint(BaseModel):
    seq: int
    step: int
    epoch: int
    metrics: dict[str, float]


class LossesPublic(BaseModel):
    """A page of the loss history; ask again with ``after=next_after`` for more."""

    data: list[LossPoint]
    count: int
    next_after: int | None = Field(description="The seq to pass as after; null at the end.")
    status: JobStatus = Field(description="The job's status when this page was read.")


class DatasetPublic(BaseModel):
    """A dataset a job can train on; pass ``ref`` as the job's ``dataset``."""

    id: str | None = Field(description="The upload's id; null for built-ins.")
    name: str
    source: DatasetSource
    ref: dict[str, str] = Field(description='{"name": ...} or {"id": ...}')
    available: bool = Field(description="False when its files are missing (mnist without data).")
    detail: str | None = Field(default=None, description="Why it is unavailable.")
    kind: str | None = None
    shape: list[int] | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    train_size: int | None = None
    val_size: int | None = None
    filename: str | None = None
    size_bytes: int | None = None
    created_at: datetime | None = None

    @classmethod
    def from_upload(cls, rec: DatasetRecord) -> DatasetPublic:
        info = rec.info
        return cls(
            id=rec.id,
            name=rec.name,
            source=DatasetSource.upload,
            ref={"id": rec.id},
            available=True,
            kind=rec.kind,
            shape=info.get("shape"),
            num_classes=info.get("num_classes"),
            class_names=info.get("class_names"),
            train_size=info.get("train_size"),
            val_size=info.get("val_size"),
            filename=rec.filename,
            size_bytes=rec.size_bytes,
            created_at=rec.created_at,
        )


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


MAX_PREDICT_ROWS = 4096


class PredictRequest(BaseModel):
    """Raw inputs, one row per example: features for the neuron, pixels in [0, 1] for the CNN."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"inputs": [[0.5, -0.2], [1.0, 0.3]]}]}
    )

    inputs: Annotated[list[Any], Field(min_length=1, max_length=MAX_PREDICT_ROWS)]


class Prediction(BaseModel):
    label: str = Field(description="The most probable class name.")
    class_index: int
    probabilities: list[float]


class PredictionsPublic(BaseModel):
    class_names: list[str]
    predictions: list[Prediction]
    step: int = Field(description="The checkpoint step these came from.")


class SamplesPublic(BaseModel):
    n: int
    seed: int
    step: int = Field(description="The checkpoint step these came from.")
    shape: list[int]
    samples: list[Any]


class HealthPublic(BaseModel):
    status: str


class ReadinessPublic(BaseModel):
    status: str
    checks: dict[str, str] = Field(description="store, broker, workers: ok or what failed.")
