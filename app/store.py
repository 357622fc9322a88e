"""``JobStore``: every read and write of job state, for the API and the worker.

Each public method runs one short transaction and commits at its end — the method call is
the unit of work. Records handed out are plain dataclasses, usable after the session closes.

Event sequence numbers come from the job row's ``last_seq`` counter, bumped with an atomic
``UPDATE … RETURNING`` *before* anything is read: on PostgreSQL that row lock, on SQLite the
write lock it takes, serialise a worker's metrics batch against a concurrent status event, so
seqs are 1, 2, 3, … per job with no gap and no duplicate.

Worker heartbeats (``heartbeat``, ``live_workers``, ``remove_worker``) live here too: one row
per worker process, which ``/readyz`` and ``/metrics`` read because a busy solo-pool worker
answers no Celery ping.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from pydantic import TypeAdapter
from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from app.db import Job, JobEvent, UploadedDataset, WorkerHeartbeat, utcnow
from ml.specs import AnySpec, TrainSpec

SPEC_ADAPTER: TypeAdapter[AnySpec] = TypeAdapter(TrainSpec)
_ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_PAGE = 1000
# The tables, for the Core statements of the hot paths (no ORM objects there).
_JOBS = cast(Table, Job.__table__)
_EVENTS = cast(Table, JobEvent.__table__)
_WORKERS = cast(Table, WorkerHeartbeat.__table__)
_NUMBER = (int, float)
# Event data as JSON text (what json.dumps writes), for a JSON column on any backend.
_JSON_TEXT = json.JSONEncoder(check_circular=False)


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


class EventKind(StrEnum):
    """What a stored event is: the ml event kinds plus ``status`` (the job's own changes)."""

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
class WorkerRecord:
    """A worker process as its last heartbeat described it."""

    name: str  # Celery node name, e.g. "cpu.4242@host"
    hostname: str
    queues: tuple[str, ...]
    device: str | None
    pid: int
    started_at: datetime
    last_seen: datetime
    job_id: str | None  # the job it is running, None when idle

    @classmethod
    def from_row(cls, row: WorkerHeartbeat) -> WorkerRecord:
        return cls(
            name=row.name,
            hostname=row.hostname,
            queues=tuple(q for q in row.queues.split(",") if q),
            device=row.device,
            pid=row.pid,
            started_at=row.started_at,
            last_seen=row.last_seen,
            job_id=row.job_id,
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


def _best_direction(name: str) -> bool | None:
    """For metric ``name``: True if higher is better (accuracy), False if lower (a loss),
    None if no best is kept."""
    if name.endswith("accuracy"):
        return True
    if name.endswith("loss"):
        return False
    return None


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
        self._event_insert = _EventInsert.compile(engine.dialect)

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
                s.connection(),
                job_id,
                [_status_event(JobStatus.running, worker=worker, device=device)],
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
        with self.engine.begin() as conn:
            return self._append(conn, job_id, events)

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
                self._append(s.connection(), job_id, [_status_event(JobStatus.cancelled)])
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
                self._append(s.connection(), job_id, [_status_event(status, **extra)])

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
            self._append(
                s.connection(), job_id, [_status_event(JobStatus.queued, reason="requeued")]
            )
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
                    JobEvent.kind != EventKind.status.value,
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

    # --- worker heartbeats ------------------------------------------------------------------------

    def heartbeat(
        self,
        name: str,
        *,
        hostname: str,
        queues: Sequence[str],
        device: str | None,
        pid: int,
        started_at: datetime,
        job_id: str | None = None,
    ) -> None:
        """Insert or refresh worker ``name``'s row; ``last_seen`` becomes now."""
        values = {
            "hostname": hostname,
            "queues": ",".join(queues),
            "device": device,
            "pid": pid,
            "started_at": started_at,
            "last_seen": self._now(),
            "job_id": job_id,
        }
        upsert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = upsert(_WORKERS).values(name=name, **values)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))

    def live_workers(self, within_s: float) -> list[WorkerRecord]:
        """Workers whose last heartbeat is at most ``within_s`` seconds old, by name."""
        q = (
            select(WorkerHeartbeat)
            .where(WorkerHeartbeat.last_seen >= self._now(-within_s))
            .order_by(WorkerHeartbeat.name)
        )
        with self._tx() as s:
            return [WorkerRecord.from_row(r) for r in s.scalars(q)]

    def remove_worker(self, name: str) -> bool:
        """Forget worker ``name`` (it is shutting down); False if it had no row."""
        with self._tx() as s:
            result = s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def prune_workers(self, older_than_s: float) -> int:
        """Delete the rows of workers silent for ``older_than_s`` seconds (killed, never
        removed their row); returns how many."""
        with self._tx() as s:
            result = s.execute(
                delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < self._now(-older_than_s))
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _now(self, offset_s: float = 0.0) -> Any:
        """Now (plus ``offset_s``) for heartbeat times, on the database's clock where there is
        one to share: on PostgreSQL, workers on many hosts and the API compare their beats
        on the server's clock, so a host whose clock drifts is neither dropped nor kept alive.
        SQLite is embedded mode, one host: this process's clock."""
        if self.engine.dialect.name == "postgresql":
            now = func.now()
            return now + timedelta(seconds=offset_s) if offset_s else now
        return utcnow() + timedelta(seconds=offset_s)

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

    def _append(self, conn: Connection, job_id: str, events: Sequence[EventIn]) -> int:
        """Append ``events`` inside the caller's transaction; the worker's hot path.

        Three statements whatever the batch size, no ORM objects and no unit of work: bump the
        seq counter (``RETURNING`` the metrics it needs), one executemany INSERT of the events
        (:class:`_EventInsert`), and one UPDATE of the job's progress. Work that does not
        depend on the event is done once per batch — ``created_at`` is when the batch is
        written, shared by its events — so the per-event cost is a tuple and a JSON encoding.
        """
        n = len(events)
        now = utcnow()
        status = EventKind.status.value
        tail = None  # the last non-status event: the job's progress
        for ev in reversed(events):
            if ev.kind != status:
                tail = ev
                break
        # Bump the counter first: this takes the row (PostgreSQL) or database (SQLite) write lock,
        # so nothing else can allocate seqs for this job until we commit. It also reads the
        # latest/best metrics, which the lock keeps current until then.
        bump = (
            update(_JOBS)
            .where(_JOBS.c.id == job_id)
            .values(last_seq=_JOBS.c.last_seq + n, updated_at=now)
        )
        if tail is None:
            got = conn.execute(bump.returning(_JOBS.c.last_seq)).first()
        else:
            got = conn.execute(
                bump.returning(_JOBS.c.last_seq, _JOBS.c.metrics, _JOBS.c.best_metrics)
            ).first()
        if got is None:
            return 0
        last = int(got[0])
        first = last - n + 1
        ins = self._event_insert
        data = ins.encode_data
        created_at = ins.encode_time(now)  # converted once: the batch shares it
        ins.execute(
            conn,
            [
                (
                    job_id,
                    seq,
                    str(ev.kind),
                    int(ev.step),
                    int(ev.epoch),
                    int(ev.total_steps),
                    data(ev.data),
                    created_at,
                )
                for seq, ev in enumerate(events, first)
            ],
        )
        if tail is not None:
            latest, best = _merge_metrics(events, dict(got[1] or {}), dict(got[2] or {}))
            progress: dict[str, Any] = {
                "step": max(int(tail.step), 0),
                "epoch": max(int(tail.epoch), 0),
                "metrics": latest,
                "best_metrics": best,
            }
            if tail.total_steps:
                progress["total_steps"] = int(tail.total_steps)
            conn.execute(update(_JOBS).where(_JOBS.c.id == job_id).values(**progress))
        return last


@dataclass(frozen=True, slots=True)
class _EventInsert:
    """``INSERT INTO job_events``, compiled once for a dialect, run as the driver's executemany.

    The worker appends thousands of events a second (a neuron step takes a quarter of a
    millisecond), and per row SQLAlchemy's own executemany builds a parameter dict and runs
    each column's bind processor through its generic machinery: most of the logging CPU.
    Here the SQL is what SQLAlchemy compiles for the dialect, so it stays portable (``?`` on
    SQLite; ``%(name)s::JSONB`` and the like on psycopg), the rows are plain tuples, and the
    two conversions left are done directly: ``data`` to JSON text per row — the same text
    ``json.dumps`` gives, stored as is in SQLite's JSON (text) column and cast to JSONB on
    PostgreSQL, so it reads back as an object on both — and ``created_at`` through its
    column type once per batch. ``exec_driver_sql`` hands the rows to ``cursor.executemany``
    (sqlite3's; psycopg's pipelines them in one round trip), keeping SQLAlchemy's events and
    error wrapping.
    """

    sql: str
    keys: tuple[str, ...] | None  # column names for a named paramstyle; None: positional
    encode_data: Callable[[Any], str]
    encode_time: Callable[[datetime], Any]

    @classmethod
    def compile(cls, dialect: Dialect) -> _EventInsert:
        columns = tuple(c.key for c in _EVENTS.c)  # the order of the row tuples
        compiled = insert(_EVENTS).compile(dialect=dialect, column_keys=list(columns))
        if compiled.positional and tuple(compiled.positiontup or ()) != columns:
            raise RuntimeError(f"unexpected parameter order {compiled.positiontup}")
        return cls(
            sql=compiled.string,
            keys=None if compiled.positional else columns,
            encode_data=_JSON_TEXT.encode,
            encode_time=_bind(_EVENTS.c.created_at.type, dialect),
        )

    def execute(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        keys = self.keys
        params = rows if keys is None else [dict(zip(keys, row, strict=True)) for row in rows]
        conn.exec_driver_sql(self.sql, params)


def _bind(type_: Any, dialect: Dialect) -> Callable[[Any], Any]:
    """The column type's bind conversion on ``dialect`` (identity if it has none)."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _identity


def _identity(value: Any) -> Any:
    return value


def _merge_metrics(
    events: Sequence[EventIn], latest: dict[str, Any], best: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``latest`` and ``best`` moved on by the numeric values of the ``metrics`` events."""
    kind = EventKind.metrics.value
    # Whether a metric tracks a best, and which way, is decided once per name, not per event.
    rules: dict[str, bool | None] = {}  # name -> higher is better; None: no best kept
    for ev in events:
        if ev.kind != kind:
            continue
        for name, value in ev.data.items():
            if not isinstance(value, _NUMBER) or isinstance(value, bool):
                continue
            latest[name] = value
            try:
                higher = rules[name]
            except KeyError:
                higher = rules[name] = _best_direction(name)
            if higher is None:
                continue
            old = best.get(name)
            if old is None or (value > old if higher else value < old):
                best[name] = value
    return latest, best


def _status_event(status: JobStatus, **extra: Any) -> EventIn:
    return EventIn(kind=EventKind.status.value, data={"status": status.value, **extra})


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
