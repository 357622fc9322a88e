"""``JobStore``: every read and write of job state, for the API and the worker.

Each public method runs one short transaction and commits at its end — the method call is
the unit of work. Records handed out are plain dataclasses, usable after the session closes.

Event sequence numbers come from the job row's ``last_seq`` counter, bumped with an atomic
``UPDATE … RETURNING`` *before* anything is read: on PostgreSQL that row lock, on SQLite the
write lock it takes, serialise a worker's metrics batch against a concurrent status event, so
seqs are 1, 2, 3, … per job with no gap and no duplicate.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Engine, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import Job, JobEvent, UploadedDataset, utcnow
from ml.specs import AnySpec, TrainSpec

SPEC_ADAPTER: TypeAdapter[AnySpec] = TypeAdapter(TrainSpec)
_ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_PAGE = 1000


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class EventKindIn(StrEnum):
    metrics = "metrics"
    status = "status"
    checkpoint = "checkpoint"
    progress_image = "progress_image"


class InvalidCursor(ValueError):
    """A ``list_jobs`` cursor that this store did not hand out."""


def new_id(length: int = 12) -> str:
    """A short, url-safe, random id (62 bits for 12 characters)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class EventIn:
    """An event to append; ``data`` is the metrics dict, or e.g. ``{"path": ...}``."""

    kind: str  # metrics | status | checkpoint | progress_image
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRecord:
    job_id: str
    seq: int
    kind: str
    step: int
    epoch: int
    total_steps: int
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    name: str | None
    model: str
    dataset: str
    spec: AnySpec
    status: JobStatus
    requested_device: str
    queue: str
    step: int
    total_steps: int
    epoch: int
    metrics: dict[str, Any]
    best_metrics: dict[str, Any]
    error: str | None
    worker: str | None
    device: str | None
    cancel_requested: bool
    attempts: int
    last_seq: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: Job) -> JobRecord:
        return cls(
            id=row.id,
            name=row.name,
            model=row.model,
            dataset=row.dataset,
            spec=SPEC_ADAPTER.validate_python(row.spec),
            status=JobStatus(row.status),
            requested_device=row.requested_device,
            queue=row.queue,
            step=row.step,
            total_steps=row.total_steps,
            epoch=row.epoch,
            metrics=dict(row.metrics or {}),
            best_metrics=dict(row.best_metrics or {}),
            error=row.error,
            worker=row.worker,
            device=row.device,
            cancel_requested=bool(row.cancel_requested),
            attempts=row.attempts,
            last_seq=row.last_seq,
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    data: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    id: str
    name: str
    filename: str
    kind: str
    size_bytes: int
    info: dict[str, Any]
    created_at: datetime


def _better(name: str, new: float, old: float | None) -> bool:
    """Whether ``new`` beats ``old`` for metric ``name`` (min for losses, max for accuracy)."""
    if old is None:
        return True
    return new > old if name.endswith("accuracy") else new < old


def _tracks_best(name: str) -> bool:
    return name.endswith("loss") or name.endswith("accuracy")


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, job_id = json.loads(raw)
        created = datetime.fromisoformat(when)
        if not isinstance(job_id, str) or created.tzinfo is None:
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursor("invalid cursor") from exc
    return created, job_id


class JobStore:
    """The job store on one SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # --- health ------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- jobs --------------------------------------------------------------------------------

    def create_job(self, spec: AnySpec, *, queue: str = "cpu") -> JobRecord:
        """Store a new job, status ``queued``."""
        now = utcnow()
        row = Job(
            id=new_id(),
            name=spec.name,
            model=spec.model.value,
            dataset=spec.dataset.key,
            spec=spec.model_dump(mode="json"),
            status=JobStatus.queued.value,
            requested_device=spec.device.value,
            queue=queue,
            step=0,
            total_steps=0,
            epoch=0,
            metrics={},
            best_metrics={},
            cancel_requested=False,
            attempts=0,
            last_seq=0,
            created_at=now,
            updated_at=now,
        )
        with self._tx() as s:
            s.add(row)
            s.flush()
            return JobRecord.from_row(row)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._tx() as s:
            row = s.get(Job, job_id)
            return None if row is None else JobRecord.from_row(row)

    def list_jobs(
        self,
        status: str | None = None,
        model: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs newest first; pass the returned ``next_cursor`` back for the next page.

        Raises :class:`InvalidCursor` for a cursor this store did not hand out.
        """
        limit = max(1, min(limit, MAX_PAGE))
        q = select(Job)
        if status is not None:
            q = q.where(Job.status == str(status))
        if model is not None:
            q = q.where(Job.model == str(model))
        if cursor:
            created, job_id = _decode_cursor(cursor)
            q = q.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
            )
        q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        with self._tx() as s:
            rows = list(s.scalars(q))
            records = [JobRecord.from_row(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = records[-1]
            nxt = _encode_cursor(last.created_at, last.id)
        return JobPage(data=records, next_cursor=nxt)

    def count_by_status(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, zero included)."""
        with self._tx() as s:
            rows = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        counts = {st.value: 0 for st in JobStatus}
        counts.update({str(st): int(n) for st, n in rows})
        return counts

    def delete_job(self, job_id: str) -> bool:
        """Remove a job and its events; False if there was no such job."""
        with self._tx() as s:
            s.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
            result = s.execute(delete(Job).where(Job.id == job_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- the worker's side ----------------------------------------------------------------------

    def claim(self, job_id: str, worker: str, device: str) -> JobRecord | None:
        """queued → running, atomically; None if the job is cancelled, deleted or not queued."""
        now = utcnow()
        with self._tx() as s:
            claimed = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued.value)
                .values(
                    status=JobStatus.running.value,
                    worker=worker,
                    device=device,
                    attempts=Job.attempts + 1,
                    started_at=func.coalesce(Job.started_at, now),
                    finished_at=None,
                    updated_at=now,
                )
                .returning(Job.id)
            ).first()
            if claimed is None:
                return None
            self._append(
                s, job_id, [_status_event(JobStatus.running, worker=worker, device=device)]
            )
            row = s.get(Job, job_id, populate_existing=True)
            assert row is not None
            return JobRecord.from_row(row)

    def append_events(self, job_id: str, events: Sequence[EventIn]) -> int:
        """Append ``events`` with consecutive seqs in one INSERT; returns the last seq (0 if none).

        Also moves the job's progress (step, total_steps, epoch) and its latest and best
        metrics. Returns 0 without writing if the job no longer exists.
        """
        if not events:
            return 0
        with self._tx() as s:
            return self._append(s, job_id, events)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel the job (True also if it is gone or already final)."""
        with self._tx() as s:
            row = s.execute(
                select(Job.cancel_requested, Job.status).where(Job.id == job_id)
            ).first()
        if row is None:
            return True
        flag, status = row
        return bool(flag) or status == JobStatus.cancelled.value

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A queued job becomes cancelled at once; a running one gets the cancel flag.

        Returns the job as it is afterwards (unchanged if already final), None if unknown.
        """
        now = utcnow()
        with self._tx() as s:
            cancelled = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued.value)
                .values(
                    status=JobStatus.cancelled.value,
                    cancel_requested=True,
                    finished_at=now,
                    updated_at=now,
                )
                .returning(Job.id)
            ).first()
            if cancelled is not None:
                self._append(s, job_id, [_status_event(JobStatus.cancelled)])
            else:
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.running.value)
                    .values(cancel_requested=True, updated_at=now)
                )
            row = s.get(Job, job_id, populate_existing=True)
            return None if row is None else JobRecord.from_row(row)

    def finish(self, job_id: str, status: JobStatus | str, error: str | None = None) -> None:
        """Move a job to succeeded, failed or cancelled, with a ``status`` event."""
        status = JobStatus(status)
        if status not in TERMINAL:
            raise ValueError(f"finish() needs a final status, not {status}")
        now = utcnow()
        with self._tx() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=status.value, error=error, finished_at=now, updated_at=now)
                .returning(Job.id)
            ).first()
            if done is not None:
                extra = {"error": error} if error else {}
                self._append(s, job_id, [_status_event(status, **extra)])

    def requeue(self, job_id: str) -> bool:
        """running → queued (a worker shutting down gracefully); another worker resumes it."""
        now = utcnow()
        with self._tx() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.running.value)
                .values(status=JobStatus.queued.value, worker=None, updated_at=now)
                .returning(Job.id)
            ).first()
            if done is None:
                return False
            self._append(s, job_id, [_status_event(JobStatus.queued, reason="requeued")])
            return True

    def drop_events_after(self, job_id: str, step: int) -> int:
        """Delete metrics/checkpoint/image events later than ``step`` (resume after a crash).

        Seqs are never reused: the counter stays, so a stream client's Last-Event-ID stays valid.
        Returns the number of events removed.
        """
        with self._tx() as s:
            s.execute(update(Job).where(Job.id == job_id).values(step=step, updated_at=utcnow()))
            result = s.execute(
                delete(JobEvent).where(
                    JobEvent.job_id == job_id,
                    JobEvent.kind != EventKindIn.status.value,
                    JobEvent.step > step,
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def events_after(
        self, job_id: str, seq: int = 0, limit: int = 500, kinds: Sequence[str] | None = None
    ) -> list[EventRecord]:
        """Events with ``seq`` greater than ``seq``, oldest first, at most ``limit``."""
        q = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > seq)
        if kinds:
            q = q.where(JobEvent.kind.in_([str(k) for k in kinds]))
        q = q.order_by(JobEvent.seq).limit(max(1, min(limit, 100_000)))
        with self._tx() as s:
            return [
                EventRecord(
                    job_id=e.job_id,
                    seq=e.seq,
                    kind=e.kind,
                    step=e.step,
                    epoch=e.epoch,
                    total_steps=e.total_steps,
                    data=dict(e.data or {}),
                    created_at=e.created_at,
                )
                for e in s.scalars(q)
            ]

    # --- datasets ------------------------------------------------------------------------------

    def add_dataset(
        self,
        dataset_id: str,
        *,
        name: str,
        filename: str,
        kind: str,
        size_bytes: int,
        info: dict[str, Any],
    ) -> DatasetRecord:
        row = UploadedDataset(
            id=dataset_id,
            name=name,
            filename=filename,
            kind=kind,
            size_bytes=size_bytes,
            info=info,
            created_at=utcnow(),
        )
        with self._tx() as s:
            s.add(row)
            s.flush()
            return _dataset_record(row)

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        with self._tx() as s:
            row = s.get(UploadedDataset, dataset_id)
            return None if row is None else _dataset_record(row)

    def list_datasets(self) -> list[DatasetRecord]:
        with self._tx() as s:
            q = select(UploadedDataset).order_by(UploadedDataset.created_at.desc())
            return [_dataset_record(r) for r in s.scalars(q)]

    # --- internals -----------------------------------------------------------------------------

    def _append(self, s: Session, job_id: str, events: Sequence[EventIn]) -> int:
        n = len(events)
        # Bump the counter first: this takes the row (PostgreSQL) or database (SQLite) write lock,
        # so nothing else can allocate seqs for this job until we commit.
        got = s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(last_seq=Job.last_seq + n, updated_at=utcnow())
            .returning(Job.last_seq)
        ).first()
        if got is None:
            return 0
        last = int(got[0])
        first = last - n + 1
        now = utcnow()
        rows = [
            {
                "job_id": job_id,
                "seq": first + i,
                "kind": str(ev.kind),
                "step": int(ev.step),
                "epoch": int(ev.epoch),
                "total_steps": int(ev.total_steps),
                "data": ev.data,
                "created_at": now,
            }
            for i, ev in enumerate(events)
        ]
        s.execute(insert(JobEvent), rows)
        progress = [ev for ev in events if str(ev.kind) != EventKindIn.status.value]
        if progress:
            job = s.get(Job, job_id, populate_existing=True)
            assert job is not None
            latest = dict(job.metrics or {})
            best = dict(job.best_metrics or {})
            for ev in progress:
                if str(ev.kind) != EventKindIn.metrics.value:
                    continue
                for name, value in ev.data.items():
                    if not isinstance(value, int | float) or isinstance(value, bool):
                        continue
                    latest[name] = value
                    if _tracks_best(name) and _better(name, value, best.get(name)):
                        best[name] = value
            tail = progress[-1]
            job.step = max(int(tail.step), 0)
            job.epoch = max(int(tail.epoch), 0)
            if tail.total_steps:
                job.total_steps = int(tail.total_steps)
            job.metrics = latest
            job.best_metrics = best
        return last


def _status_event(status: JobStatus, **extra: Any) -> EventIn:
    return EventIn(kind=EventKindIn.status.value, data={"status": status.value, **extra})


def _dataset_record(row: UploadedDataset) -> DatasetRecord:
    return DatasetRecord(
        id=row.id,
        name=row.name,
        filename=row.filename,
        kind=row.kind,
        size_bytes=row.size_bytes,
        info=dict(row.info or {}),
        created_at=row.created_at,
    )
