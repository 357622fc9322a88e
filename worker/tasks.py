"""The one Celery task, ``jobs.run``, and the worker's graceful-shutdown hook.

The task is thin: it hands the job id to :func:`worker.runner.run_job`, which does the work.

Shutdown. Workers run the **solo** pool (see :mod:`worker.celery_app`), so the task runs in
the worker's main thread and Celery's own SIGTERM/SIGINT handler runs there too, between two
bytecodes of the training step. That handler sends ``worker_shutting_down`` before it sets
Celery's stop flag; our receiver only sets :data:`SHUTDOWN` (no I/O, no logging: it runs
inside a signal handler). The loop sees it at the next ``should_stop()``, checkpoints and
returns; ``run_job`` flushes the events, moves the job back to ``queued`` and sends a fresh
``jobs.run`` message for it to the job's queue; the task then returns, its message is
acknowledged (``acks_late``), and Celery's warm shutdown completes. Another worker claims the
job and resumes from the checkpoint.

Why re-send instead of relying on redelivery of the unacknowledged message: on Redis an
unacknowledged message comes back only after the visibility timeout (a day, longer than the
longest job), and the embedded SQLite broker has no timeout at all. Re-sending hands the job
on at once on every broker. If the process dies between re-send and acknowledgement, the job
has two messages; ``claim`` is an atomic queued → running update, so the second one finds the
job taken (or finished) and is skipped. If it dies before re-sending, the original message is
still unacknowledged and comes back ``redelivered``, and ``run_job`` takes the job over.
If the job store cannot be reached, the message is rejected back to the broker (requeue)
after a short pause, so an outage of the store delays jobs instead of losing them.

Heartbeat. When the worker is ready (``worker_ready``) it starts a
:class:`~worker.heartbeat.Heartbeat` thread that keeps its row in the store's ``workers``
table fresh, with the id of the job the task is running; ``worker_shutdown`` stops it and
removes the row. The API reads those rows for ``/readyz`` and ``modelkiln_workers``.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from celery.utils.log import get_task_logger
from sqlalchemy.exc import InterfaceError, OperationalError

from app.db import create_engine_for
from app.settings import Settings, get_settings
from app.store import JobStore
from worker.celery_app import RUN_JOB
from worker.heartbeat import Heartbeat
from worker.runner import device_label, run_job

log = get_task_logger(__name__)

SHUTDOWN = threading.Event()  # set when this worker process has been told to stop
STORE_RETRY_S = 5.0  # pause before handing a message back when the store is unreachable
HEARTBEAT: Heartbeat | None = None  # this worker process's heartbeat, once it is ready


@worker_shutting_down.connect
def _on_worker_shutting_down(**_: Any) -> None:
    # Runs inside Celery's signal handler on the main thread: set a flag, nothing more.
    SHUTDOWN.set()


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    # ``sender`` is the worker's Consumer. Sent again when the consumer restarts after a
    # lost broker connection: the heartbeat keeps running then, so start it only once.
    global HEARTBEAT
    if HEARTBEAT is not None:
        return
    try:
        settings, store = runtime()
        queues = sorted(sender.app.amqp.queues.consume_from)
        HEARTBEAT = Heartbeat(
            store,
            name=sender.hostname,
            queues=queues,
            device=device_label("auto"),
            interval_s=settings.heartbeat_interval_s,
        ).start()
    except Exception:  # no heartbeat is a degraded worker (readiness falls back to a ping)
        log.exception("cannot start the heartbeat; this worker will not show as live")


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    global HEARTBEAT
    if HEARTBEAT is not None:
        HEARTBEAT.stop()
        HEARTBEAT = None


@lru_cache(maxsize=1)
def runtime() -> tuple[Settings, JobStore]:
    """This process's settings and job store (one engine per worker process)."""
    settings = get_settings()
    return settings, JobStore(create_engine_for(settings))


@shared_task(name=RUN_JOB, bind=True, ignore_result=True)
def run(self: Task, job_id: str) -> str:
    """Run training job ``job_id`` (queued → running → succeeded | failed | cancelled)."""
    settings, store = runtime()
    delivery = self.request.delivery_info or {}

    def resend(jid: str, queue: str) -> None:
        self.app.send_task(RUN_JOB, args=[jid], queue=queue)

    heartbeat = HEARTBEAT
    if heartbeat is not None:
        heartbeat.set_job(job_id)
    try:
        outcome = run_job(
            job_id,
            store=store,
            settings=settings,
            worker=self.request.hostname or "worker",
            shutdown=SHUTDOWN,
            resend=resend,
            redelivered=bool(delivery.get("redelivered")),
        )
    except (OperationalError, InterfaceError) as exc:
        # The job store is unreachable: the job cannot be claimed or finished. Hand the
        # message back to the broker (not acknowledged) rather than lose the job; the next
        # attempt resumes from the last checkpoint.
        log.error("job %s: the job store is unreachable (%s); retrying later", job_id, exc)
        time.sleep(STORE_RETRY_S)
        raise Reject(f"job store unreachable: {exc}", requeue=True) from exc
    finally:
        if heartbeat is not None:
            heartbeat.set_job(None)
    log.info("job %s: %s", job_id, outcome.value)
    return outcome.value
