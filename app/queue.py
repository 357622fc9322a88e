"""The API's side of Celery: send a job by task name, and look at the broker and workers.

The API never imports the task code (or torch): it sends ``"jobs.run"`` by name with the job
id as the only argument, after the job row is committed.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from app.settings import Settings
from app.store import JobStore
from worker.celery_app import QUEUES, RUN_JOB

log = logging.getLogger(__name__)

PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class TaskSender(Protocol):
    """What the API needs of a Celery app (tests pass a fake)."""

    def send_task(self, name: str, args: Any = None, **options: Any) -> Any: ...


def queue_for(device: str, settings: Settings) -> str:
    """``cuda`` → gpu, ``cpu`` → cpu, ``auto`` → ``MODELKILN_AUTO_QUEUE`` (cpu by default)."""
    if device == "cuda":
        return "gpu"
    if device == "cpu":
        return "cpu"
    return settings.auto_queue


def send_job(celery: TaskSender, job_id: str, queue: str) -> None:
    """Publish ``jobs.run(job_id)`` on ``queue``; raises if the broker cannot take it."""
    celery.send_task(RUN_JOB, args=[job_id], queue=queue, retry=True, retry_policy=PUBLISH_RETRY)


def broker_ok(celery: Any, timeout: float) -> None:
    """Raise if the broker cannot be reached within about ``timeout`` seconds."""
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)


def workers_answering(celery: Any, timeout: float) -> list[str]:
    """Names of the workers that answered a ping within ``timeout`` seconds."""
    replies = celery.control.ping(timeout=timeout) or []
    return [name for reply in replies for name in reply]


def live_workers_by_queue(store: JobStore, within_s: float) -> dict[str, int]:
    """Workers with a heartbeat at most ``within_s`` old, per queue they consume (every queue
    present, zero included; a worker on ``cpu,gpu`` counts in both)."""
    counts = dict.fromkeys(QUEUES, 0)
    for worker in store.live_workers(within_s):
        for queue in worker.queues:
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def queue_depths(celery: Any, timeout: float = 1.0) -> dict[str, int]:
    """Messages waiting in each queue (a passive declare: Redis LLEN, or the SQL count)."""
    depths: dict[str, int] = {}
    with celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        channel = conn.default_channel
        for name in QUEUES:
            try:
                _, count, _ = channel.queue_declare(queue=name, passive=True)
            except Exception:  # the queue does not exist yet: nothing sent to it
                count = 0
            depths[name] = int(count or 0)
    return depths
