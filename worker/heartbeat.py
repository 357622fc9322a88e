"""The worker's heartbeat: its row in the job store's ``workers`` table, refreshed on a timer.

Workers run Celery's solo pool (see :mod:`worker.celery_app`): a job trains on the thread that
would answer Celery's remote control, so a busy worker cannot answer a ping and ``/readyz``
and ``/metrics`` could not tell a training worker from a dead one. Instead each worker
process runs one daemon thread, :class:`Heartbeat`, that upserts its row every
``heartbeat_interval_s`` (name, host, queues, device, pid, start time, the job it is running);
the API counts a worker as alive while its row is fresher than ``worker_stale_after_s``.

The thread must never take the worker down: a failed write (the store restarting, a network
blip) is logged once, retried at the next tick, and the recovery logged. The job id is set
and cleared by the task (:func:`worker.tasks.run`) and written at once, not at the next tick.
Celery-free, so tests drive it directly; :mod:`worker.tasks` starts it on ``worker_ready``
and stops it (removing the row) on ``worker_shutdown``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence

from app.db import utcnow
from app.store import JobStore

log = logging.getLogger(__name__)

PRUNE_AFTER_S = 24 * 3600.0  # rows of workers silent this long (killed) are deleted at start


class Heartbeat:
    """One worker process's heartbeat thread (``start()``, ``set_job()``, ``stop()``)."""

    def __init__(
        self,
        store: JobStore,
        *,
        name: str,
        queues: Sequence[str],
        device: str | None,
        interval_s: float,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.queues = tuple(queues)
        self.device = device
        self.interval_s = interval_s
        self.hostname = hostname or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.started_at = utcnow()
        self.beats = 0  # successful writes
        self.failures = 0  # failed writes
        self._job_id: str | None = None
        self._failing = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # set to beat now: a new job id, or stop
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    @property
    def job_id(self) -> str | None:
        return self._job_id

    def start(self) -> Heartbeat:
        try:
            pruned = self.store.prune_workers(PRUNE_AFTER_S)
            if pruned:
                log.info("heartbeat: forgot %d workers silent for a day or more", pruned)
        except Exception as exc:  # housekeeping only: never a reason not to start
            log.warning("heartbeat: cannot prune old worker rows: %s", exc)
        self._thread.start()
        return self

    def set_job(self, job_id: str | None) -> None:
        """Record the job this worker is running (None: idle); written at once."""
        self._job_id = job_id
        self._wake.set()

    def beat(self) -> bool:
        """Write the row once; False (logged, never raised) if the store is unreachable."""
        try:
            self.store.heartbeat(
                self.name,
                hostname=self.hostname,
                queues=self.queues,
                device=self.device,
                pid=self.pid,
                started_at=self.started_at,
                job_id=self._job_id,
            )
        except Exception as exc:
            self.failures += 1
            if not self._failing:
                log.warning(
                    "heartbeat: cannot write to the job store (%s: %s); retrying every %g s",
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    self.interval_s,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat: the job store answers again")
            self._failing = False
        self.beats += 1
        return True

    def stop(self, *, remove: bool = True, timeout_s: float = 10.0) -> None:
        """Stop the thread and, with ``remove``, delete the row.

        The row is left alone when the store is not answering (the last write failed, or one
        is still hanging): shutdown should not wait on it, and the row goes stale by itself,
        after which the API no longer counts the worker. A failed delete is only logged.
        """
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if remove and not self._failing and not self._thread.is_alive():
            try:
                self.store.remove_worker(self.name)
            except Exception as exc:
                log.warning("heartbeat: cannot remove this worker's row: %s", exc)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            # Clear before writing: a set_job() during the write wakes the next one at once.
            self._wake.clear()
            try:
                self.beat()
            except Exception:  # beat() catches its own errors; this is the last line of defence
                log.exception("heartbeat: unexpected error; retrying next tick")
            self._wake.wait(self.interval_s)
