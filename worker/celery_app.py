"""The Celery application, configured for long training jobs. Imports no torch.

The API imports this module only to ``send_task`` by name; the worker adds the task module
(``include``, imported only when a worker starts).

Pool: **solo**, one job per worker process. A GPU host runs one ``modelkiln worker`` process
per GPU (``--concurrency N`` starts N of them, each with its own ``CUDA_VISIBLE_DEVICES``).
The solo pool never forks, so CUDA is only ever initialised in the process that uses it
(prefork would fork children from a parent that may already have touched CUDA; the spawn
start method would avoid that, but solo is simpler and costs nothing for one job at a time).
It also lets Celery's SIGTERM handler run in the thread that trains, which is what makes the
graceful shutdown in :mod:`worker.tasks` a flag check rather than a cross-process message.

``celery -A worker.celery_app ...`` (Flower, inspect) finds the app as ``app``, built on
first use from the environment's settings.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Queue

from app.settings import Settings, get_settings

RUN_JOB = "jobs.run"  # the one task: run a training job, given its id
QUEUES = ("cpu", "gpu")


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (broker from MODELKILN_BROKER_URL, or the embedded one)."""
    settings = settings or get_settings()
    if settings.embedded_broker:
        settings.home.mkdir(parents=True, exist_ok=True)
    app = Celery("modelkiln", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        # Job state lives in our job store, never in a result backend.
        task_ignore_result=True,
        result_backend=None,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        # Long jobs: acknowledge after the job, take one message at a time, and keep a
        # message invisible for longer than the longest job (Redis re-delivers after that).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="solo",
        worker_concurrency=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s}
        if not settings.embedded_broker
        else {},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=True,
    )
    return app


@lru_cache(maxsize=1)
def get_celery() -> Celery:
    """The process-wide Celery app for :func:`~app.settings.get_settings`."""
    return create_celery()


def __getattr__(name: str) -> Celery:
    # ``celery -A worker.celery_app`` looks for ``app`` (or ``celery``); build it lazily so
    # importing this module reads no settings.
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
