"""Jobs: submit, list, inspect, cancel, delete, and read the loss history."""

from __future__ import annotations

import csv
import io
import logging
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.openapi.models import Example

from app.catalog import check_suits
from app.deps import CatalogDep, CeleryDep, JobDep, SettingsDep, StoreDep
from app.errors import BrokerUnavailable, Invalid, JobNotFound, WrongState
from app.queue import queue_for, send_job
from app.schemas import (
    JobCreate,
    JobPublic,
    JobsPublic,
    LossesPublic,
    LossFormat,
    LossPoint,
)
from app.store import EventRecord, InvalidCursor, JobStatus, JobStore
from ml.specs import EXAMPLES, AnySpec, ModelKind

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JOB_EXAMPLES: dict[str, Example] = {
    kind: Example(summary=f"a {kind} job", value=body) for kind, body in EXAMPLES.items()
}
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job."},
    409: {"description": "Wrong state or wrong model kind for this call."},
}
MAX_LOSS_PAGE = 10_000


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={
        422: {"description": "Invalid spec or unsuitable dataset."},
        503: {"description": "Broker or store unreachable."},
    },
)
def create_job(
    spec: Annotated[JobCreate, Body(openapi_examples=JOB_EXAMPLES)],
    response: Response,
    store: StoreDep,
    celery: CeleryDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> JobPublic:
    """Queue a training job (neuron, cnn or gan) on a built-in or uploaded dataset."""
    typed: AnySpec = spec
    check_suits(typed, catalog.describe(typed.dataset, store))
    queue = queue_for(typed.device.value, settings)
    job = store.create_job(typed, queue=queue)
    try:
        send_job(celery, job.id, queue)
    except Exception as exc:
        store.delete_job(job.id)  # no half-created job: it would never run
        log.warning("broker refused job %s: %s", job.id, exc)
        raise BrokerUnavailable(
            f"the broker is unreachable, the job was not queued: {exc}"
        ) from exc
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobPublic.from_record(job)


@router.get("", response_model=JobsPublic)
def list_jobs(
    store: StoreDep,
    status: JobStatus | None = None,
    model: ModelKind | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobsPublic:
    """Jobs, newest first, filtered by status and model; follow next_cursor for more."""
    try:
        page = store.list_jobs(status=status, model=model, cursor=cursor, limit=limit)
    except InvalidCursor as exc:
        raise Invalid("cursor is not one this API handed out") from exc
    data = [JobPublic.from_record(j) for j in page.data]
    return JobsPublic(data=data, count=len(data), next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS)
def get_job(job: JobDep) -> JobPublic:
    """A job: status, progress, latest and best metrics, timestamps, error, worker, device."""
    return JobPublic.from_record(job)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=ERRORS,
)
def cancel_job(job: JobDep, store: StoreDep) -> JobPublic:
    """Cancel: a queued job never starts; a running one stops at its next step."""
    updated = store.request_cancel(job.id)
    if updated is None:
        raise JobNotFound(job.id)
    return JobPublic.from_record(updated)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_job(job: JobDep, store: StoreDep, settings: SettingsDep) -> Response:
    """Delete a finished job, its events and its artifacts (409 while queued or running)."""
    if not job.terminal:
        raise WrongState(f"job {job.id} is {job.status.value}; cancel it first, then delete it")
    store.delete_job(job.id)
    shutil.rmtree(settings.runs_dir / job.id, ignore_errors=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/losses",
    response_model=LossesPublic,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
)
def losses(
    job: JobDep,
    store: StoreDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="Events after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOSS_PAGE)] = 1000,
    every: Annotated[int, Query(ge=1, le=1_000_000, description="Keep every K-th step.")] = 1,
    format: LossFormat = LossFormat.json,
) -> Any:
    """The metrics history: JSON pages (after/limit), CSV, downsampled with every=K."""
    if format is LossFormat.csv:
        points = _all_points(store, job.id, every)
        return Response(
            _csv(points),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{job.id}-losses.csv"'},
        )
    events = store.events_after(job.id, after, limit, kinds=["metrics"])
    points = [_point(e) for e in events if _keep(e, every)]
    next_after = events[-1].seq if len(events) == limit else None
    return LossesPublic(data=points, count=len(points), next_after=next_after, status=job.status)


def _keep(ev: EventRecord, every: int) -> bool:
    """Downsampling keeps steps divisible by K, and every epoch-end (validation) event."""
    return every == 1 or ev.step % every == 0 or any(k.startswith("val_") for k in ev.data)


def _point(ev: EventRecord) -> LossPoint:
    metrics = {k: float(v) for k, v in ev.data.items() if isinstance(v, int | float)}
    return LossPoint(seq=ev.seq, step=ev.step, epoch=ev.epoch, metrics=metrics)


def _all_points(store: JobStore, job_id: str, every: int) -> list[LossPoint]:
    points: list[LossPoint] = []
    after = 0
    while True:
        events = store.events_after(job_id, after, MAX_LOSS_PAGE, kinds=["metrics"])
        points.extend(_point(e) for e in events if _keep(e, every))
        if len(events) < MAX_LOSS_PAGE:
            return points
        after = events[-1].seq


def _csv(points: list[LossPoint]) -> str:
    names: list[str] = []
    for p in points:
        names.extend(k for k in p.metrics if k not in names)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["seq", "step", "epoch", *names])
    for p in points:
        writer.writerow([p.seq, p.step, p.epoch, *(_fmt(p.metrics.get(n)) for n in names)])
    return out.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(value)
