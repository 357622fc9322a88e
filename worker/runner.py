"""Running one job: the work behind the ``jobs.run`` task, free of Celery so tests can call it.

:func:`run_job` reloads the job, claims it, hands the spec to :func:`ml.train` and records the
outcome. Two things happen beside the training loop, on one background thread owned by
:class:`EventSink`, so that the loop itself only appends to a deque and reads a flag:

* buffered :class:`~ml.events.TrainEvent` s are written to the store in one ``append_events``
  call every ``settings.event_flush_interval_s`` (and once more at the end);
* after each flush the thread reads ``cancel_requested`` and, if set, raises the stop flag
  that ``should_stop()`` returns at the next step.

A worker that is shutting down (``SIGTERM``) sets ``shutdown``; the loop then writes a
checkpoint at its current step and returns, and :func:`run_job` flushes every event up to
that step, moves the job back to ``queued`` and sends a fresh ``jobs.run`` message, so another
worker resumes it from that checkpoint — its loss history continues at the next step, with
no gap and no duplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from app.settings import Settings
from app.store import EventIn, JobStatus, JobStore
from ml import layout
from ml.errors import MLError
from ml.events import TrainEvent, TrainResult, TrainStatus
from ml.specs import AnySpec

log = logging.getLogger(__name__)


Resend = Callable[[str, str], None]  # (job_id, queue): put a fresh "jobs.run" on the queue


class Outcome(StrEnum):
    """What one delivery of ``jobs.run`` did with its job."""

    skipped = "skipped"  # not runnable: unknown, cancelled while queued, already taken or done
    deferred = "deferred"  # the worker was already shutting down: re-sent without claiming
    requeued = "requeued"  # stopped by a worker shutdown at a checkpoint; re-sent to resume
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class EventSink:
    """``on_event`` and ``should_stop`` for one run, and the thread that serves them.

    ``on_event`` costs one ``deque.append`` (thread-safe, no lock) and ``should_stop`` two
    ``Event.is_set`` reads; everything that touches the database happens on the flusher
    thread, a batch at a time. Only one flush runs at a time (a lock), so seqs are assigned
    in the order the events were produced.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        *,
        interval_s: float,
        run_dir: Path,
        shutdown: threading.Event,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.interval_s = interval_s
        self.run_dir = run_dir
        self.shutdown = shutdown
        self.cancelled = threading.Event()  # set once the store says cancel was requested
        self.flushes = 0  # append_events calls that wrote at least one event
        self.flushed_events = 0
        self._queue: deque[TrainEvent] = deque()
        self._retry: list[EventIn] = []  # a batch whose write failed; written first next time
        self._paths: dict[Path, str] = {}  # artifact path -> as recorded (see _relative)
        self._flush_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"events-{job_id}", daemon=True)

    # --- the training loop's side: cheap ---------------------------------------------------

    def on_event(self, event: TrainEvent) -> None:
        self._queue.append(event)

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or self.shutdown.is_set()

    # --- the background side ----------------------------------------------------------------

    def start(self) -> EventSink:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and write what is left (raises if that final write fails)."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()

    def flush(self) -> int:
        """Write the buffered events in one ``append_events`` call; returns how many."""
        with self._flush_lock:
            n = len(self._queue)  # popleft() n times takes exactly these, in order
            batch = self._retry + [self._to_event_in(self._queue.popleft()) for _ in range(n)]
            self._retry = []
            if not batch:
                return 0
            try:
                self.store.append_events(self.job_id, batch)
            except Exception:
                self._retry = batch
                raise
            self.flushes += 1
            self.flushed_events += len(batch)
            return len(batch)

    def poll_cancel(self) -> bool:
        if self.store.cancel_requested(self.job_id):
            self.cancelled.set()
        return self.cancelled.is_set()

    def _run(self) -> None:
        while not self._closed.wait(self.interval_s):
            try:
                self.flush()
                self.poll_cancel()
            except Exception:  # a store hiccup must not end the run; retried next tick
                log.warning("job %s: writing events failed; will retry", self.job_id, exc_info=True)

    def _to_event_in(self, ev: TrainEvent) -> EventIn:
        # Runs once per event on the flusher thread (a neuron makes thousands a second), so
        # it is kept lean: positional arguments, and each distinct path made relative once.
        if ev.path is None:
            data: dict[str, object] = dict(ev.metrics)
        else:
            data = {"path": self._relative(ev.path)}
        return EventIn(str(ev.kind), ev.step, ev.epoch, ev.total_steps, data)

    def _relative(self, path: Path) -> str:
        """``path`` relative to the run dir (the API may mount the artifacts elsewhere);
        as it is, if it lies outside. Cached: every checkpoint event names the same folder."""
        try:
            return self._paths[path]
        except KeyError:
            pass
        try:
            relative = str(Path(path).relative_to(self.run_dir))
        except ValueError:
            relative = str(path)
        self._paths[path] = relative
        return relative


def checkpoint_step(run_dir: Path) -> int:
    """The step of the checkpoint in ``run_dir`` (0 if there is none or it is unreadable)."""
    return layout.saved_step(layout.checkpoint_dir(run_dir)) or 0


def device_label(requested: str) -> str:
    """What ``claim`` records as the device before training resolves it exactly."""
    if requested == "cuda":
        return "cuda"
    if requested == "cpu":
        return "cpu"
    import torch  # the worker has it loaded already; no CUDA context is created here

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_job(
    job_id: str,
    *,
    store: JobStore,
    settings: Settings,
    worker: str,
    shutdown: threading.Event,
    resend: Resend,
    redelivered: bool = False,
) -> Outcome:
    """Run job ``job_id`` to an outcome; see the module docstring for the protocol."""
    job = store.get_job(job_id)
    if job is None:
        log.info("job %s: no such job (deleted?); skipping", job_id)
        return Outcome.skipped
    if shutdown.is_set() and job.status is JobStatus.queued:
        # This worker is stopping: leave the job for another one rather than start it.
        resend(job_id, job.queue)
        return Outcome.deferred
    claimed = store.claim(job_id, worker, device_label(job.requested_device))
    if (
        claimed is None
        and job.status is JobStatus.running
        and (redelivered or job.worker == worker)
    ):
        # The broker handed back a message that was never acknowledged: its worker died
        # mid-job (a clean stop acknowledges after re-queueing), or it is this very worker
        # process, whose last attempt lost the store. Take the job over from its checkpoint.
        log.warning("job %s: redelivered while marked running on %s; resuming", job_id, job.worker)
        store.requeue(job_id)
        claimed = store.claim(job_id, worker, device_label(job.requested_device))
    if claimed is None:
        log.info("job %s is %s; not starting it", job_id, job.status.value)
        return Outcome.skipped

    run_dir = settings.runs_dir / job_id
    resume_step = checkpoint_step(run_dir)
    dropped = store.drop_events_after(job_id, resume_step)
    if dropped:
        log.info("job %s: dropped %d events after checkpoint step %d", job_id, dropped, resume_step)
    log.info(
        "job %s: running on %s (attempt %d, from step %d)",
        job_id,
        worker,
        claimed.attempts,
        resume_step,
    )

    sink = EventSink(
        store,
        job_id,
        interval_s=settings.event_flush_interval_s,
        run_dir=run_dir,
        shutdown=shutdown,
    ).start()
    try:
        result = _train(claimed.spec, sink, run_dir, settings)
    except MLError as exc:
        sink.close()
        store.finish(job_id, JobStatus.failed, str(exc))
        log.info("job %s failed: %s", job_id, exc)
        return Outcome.failed
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        sink.close()
        store.finish(
            job_id,
            JobStatus.failed,
            f"internal error ({type(exc).__name__}: {str(exc)[:200]}); see the worker log",
        )
        return Outcome.failed
    finally:
        sink.close()  # idempotent; on the error paths it has already run

    if result.status is TrainStatus.completed:
        store.finish(job_id, JobStatus.succeeded)
        return Outcome.succeeded
    if sink.cancelled.is_set() or store.cancel_requested(job_id):
        store.finish(job_id, JobStatus.cancelled)
        log.info("job %s cancelled at step %d", job_id, result.step)
        return Outcome.cancelled
    # Stopped by a shutdown: every event up to the checkpoint step is written (close above).
    store.requeue(job_id)
    resend(job_id, job.queue)
    log.info("job %s: checkpointed at step %d and re-queued on %r", job_id, result.step, job.queue)
    return Outcome.requeued


def _train(spec: AnySpec, sink: EventSink, run_dir: Path, settings: Settings) -> TrainResult:
    from ml.training import train  # torch-heavy: imported when a job runs, not at import

    started = time.monotonic()
    result = train(
        spec,
        sink.on_event,
        sink.should_stop,
        run_dir,
        resume=True,
        uploads_dir=settings.uploads_dir,
        data_dir=settings.data_dir,
    )
    log.info(
        "trained to step %d/%d in %.1fs (%s)",
        result.step,
        result.total_steps,
        time.monotonic() - started,
        result.status.value,
    )
    return result
