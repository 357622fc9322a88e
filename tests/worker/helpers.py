"""Helpers shared by the worker tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
from typing import Any

from app.settings import Settings
from app.store import JobRecord, JobStore
from ml.specs import AnySpec
from ml.training import parse_spec
from worker.runner import Outcome, run_job


def neuron_spec(epochs: int = 2, batch_size: int = 64, **extra: Any) -> AnySpec:
    """A neuron on breast_cancer: 455 training rows, so 8 steps an epoch at batch 64."""
    return parse_spec(
        {
            "model": "neuron",
            "dataset": {"name": "breast_cancer"},
            "hyperparams": {"epochs": epochs, "batch_size": batch_size, "lr": 0.5},
            "seed": 0,
            **extra,
        }
    )


class Resends:
    """A ``resend`` callback that records what it was asked to send."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, job_id: str, queue: str) -> None:
        self.calls.append((job_id, queue))


class StopAfter(threading.Event):
    """A shutdown flag that turns on by itself after ``n`` reads (deterministic SIGTERM)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.reads = 0

    def is_set(self) -> bool:
        self.reads += 1
        return self.reads > self.n


def run(
    job_id: str,
    store: JobStore,
    settings: Settings,
    *,
    shutdown: threading.Event | None = None,
    resend: Resends | None = None,
    worker: str = "test-worker",
    redelivered: bool = False,
) -> Outcome:
    return run_job(
        job_id,
        store=store,
        settings=settings,
        worker=worker,
        shutdown=shutdown or threading.Event(),
        resend=resend or Resends(),
        redelivered=redelivered,
    )


def step_metrics(store: JobStore, job_id: str) -> list[tuple[int, float]]:
    """(step, loss) of every per-step metrics event, in seq order (validation events left out)."""
    events = store.events_after(job_id, 0, limit=100_000, kinds=["metrics"])
    return [(e.step, e.data["loss"]) for e in events if "loss" in e.data]


def final(store: JobStore, job_id: str) -> JobRecord:
    job = store.get_job(job_id)
    assert job is not None
    return job
