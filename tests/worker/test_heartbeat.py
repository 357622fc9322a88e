"""The worker's heartbeat thread on a real SQLite store: written while a job runs, survives a
store outage, started and stopped by the Celery worker signals."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from app.settings import Settings
from app.store import JobStatus, JobStore, WorkerRecord
from ml.events import TrainResult
from ml.specs import AnySpec
from tests.worker.helpers import final, neuron_spec
from worker import runner, tasks
from worker.celery_app import create_celery
from worker.heartbeat import Heartbeat

INTERVAL_S = 0.05


def wait_for(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.01)
    pytest.fail(f"not true within {timeout_s} s: {check}")


def row(store: JobStore, name: str) -> WorkerRecord | None:
    return next((w for w in store.live_workers(60) if w.name == name), None)


@pytest.fixture
def heartbeat(store: JobStore) -> Iterator[Heartbeat]:
    hb = Heartbeat(store, name="cpu.4242@test", queues=["cpu"], device="cpu", interval_s=INTERVAL_S)
    yield hb
    hb.stop()


def test_the_heartbeat_names_the_running_job_while_the_task_runs(
    store: JobStore,
    settings: Settings,
    heartbeat: Heartbeat,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "runtime", lambda: (settings, store))
    monkeypatch.setattr(tasks, "HEARTBEAT", heartbeat.start())
    job = store.create_job(neuron_spec(epochs=1))
    seen_while_training: list[WorkerRecord] = []
    real_train = runner._train

    def train_and_look(spec: AnySpec, sink: Any, run_dir: Path, s: Settings) -> TrainResult:
        # The task is mid-job here: the row must name this job, and stay fresh.
        first = wait_for(lambda: (w := row(store, "cpu.4242@test")) and w.job_id == job.id and w)
        again = wait_for(
            lambda: (w := row(store, "cpu.4242@test")) and w.last_seen > first.last_seen and w
        )
        seen_while_training.extend([first, again])
        return real_train(spec, sink, run_dir, s)

    monkeypatch.setattr(runner, "_train", train_and_look)

    assert tasks.run(job.id) == "succeeded"

    assert final(store, job.id).status is JobStatus.succeeded
    [first, again] = seen_while_training
    assert (first.queues, first.device, first.pid, first.job_id) == (
        ("cpu",),
        "cpu",
        os.getpid(),
        job.id,
    )
    assert again.job_id == job.id
    # Idle again once the task returns, and the row is gone once the worker stops.
    wait_for(lambda: (w := row(store, "cpu.4242@test")) and w.job_id is None)
    heartbeat.stop()
    assert not heartbeat.is_alive()
    assert row(store, "cpu.4242@test") is None


def test_the_heartbeat_outlives_a_store_outage_and_logs_it_once(
    store: JobStore,
    heartbeat: Heartbeat,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_heartbeat = store.heartbeat
    outage = {"left": 5}

    def flaky(*args: Any, **kwargs: Any) -> None:
        if outage["left"]:
            outage["left"] -= 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        real_heartbeat(*args, **kwargs)

    monkeypatch.setattr(store, "heartbeat", flaky)
    with caplog.at_level(logging.INFO, logger="worker.heartbeat"):
        heartbeat.start()
        wait_for(lambda: heartbeat.beats >= 1)  # counted after the write and its log line

    assert row(store, "cpu.4242@test") is not None
    assert heartbeat.is_alive()
    assert heartbeat.failures == 5 and heartbeat.beats >= 1
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in messages if level == "WARNING"]
    assert len(warnings) == 1 and "cannot write to the job store" in warnings[0]
    assert ("INFO", "heartbeat: the job store answers again") in messages


def test_an_unexpected_error_in_the_store_does_not_end_the_thread(
    store: JobStore, heartbeat: Heartbeat, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def broken(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        raise RuntimeError("a bug, not an outage")

    monkeypatch.setattr(store, "heartbeat", broken)
    heartbeat.start()
    wait_for(lambda: calls["n"] >= 3)
    assert heartbeat.is_alive()


def test_worker_ready_starts_the_heartbeat_once_and_worker_shutdown_removes_the_row(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.heartbeat_interval_s = INTERVAL_S
    monkeypatch.setattr(tasks, "runtime", lambda: (settings, store))
    monkeypatch.setattr(tasks, "HEARTBEAT", None)
    celery = create_celery(settings)
    celery.amqp.queues.select(["gpu", "cpu"])  # what `--queues=cpu,gpu` does
    consumer = SimpleNamespace(hostname="cpu+gpu.7@test", app=celery)

    tasks._on_worker_ready(sender=consumer)
    started = tasks.HEARTBEAT
    assert started is not None
    tasks._on_worker_ready(sender=consumer)  # the consumer restarted after a broker outage
    assert tasks.HEARTBEAT is started

    worker = wait_for(lambda: row(store, "cpu+gpu.7@test"))
    assert worker.queues == ("cpu", "gpu") and worker.device in ("cpu", "cuda")
    tasks._on_worker_shutdown()
    assert tasks.HEARTBEAT is None and not started.is_alive()
    assert row(store, "cpu+gpu.7@test") is None


def test_stopping_during_an_outage_does_not_wait_on_the_store_to_remove_the_row(
    store: JobStore, heartbeat: Heartbeat, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))

    removed: list[str] = []
    monkeypatch.setattr(store, "heartbeat", down)
    monkeypatch.setattr(store, "remove_worker", removed.append)
    heartbeat.start()
    wait_for(lambda: heartbeat.failures >= 2)
    heartbeat.stop()
    assert not heartbeat.is_alive()
    assert removed == []  # the row, if any, goes stale by itself
