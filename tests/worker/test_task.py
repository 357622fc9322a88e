"""The Celery task ``jobs.run`` itself, called as a plain function (no broker, no eager mode)."""

from __future__ import annotations

import pytest
from celery.exceptions import Reject
from sqlalchemy.exc import OperationalError

from app.settings import Settings
from app.store import JobStatus, JobStore
from tests.worker.helpers import final, neuron_spec
from worker import tasks
from worker.celery_app import RUN_JOB


@pytest.fixture
def task_runtime(monkeypatch: pytest.MonkeyPatch, store: JobStore, settings: Settings) -> JobStore:
    monkeypatch.setattr(tasks, "runtime", lambda: (settings, store))
    return store


def test_the_task_is_registered_under_its_name() -> None:
    assert tasks.run.name == RUN_JOB == "jobs.run"


def test_the_task_runs_a_job_to_success(task_runtime: JobStore) -> None:
    job = task_runtime.create_job(neuron_spec(epochs=1))

    assert tasks.run(job.id) == "succeeded"
    assert final(task_runtime, job.id).status is JobStatus.succeeded


def test_an_unreachable_store_hands_the_message_back_instead_of_losing_the_job(
    task_runtime: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(job_id: str) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(task_runtime, "get_job", down)
    monkeypatch.setattr(tasks, "STORE_RETRY_S", 0.0)

    with pytest.raises(Reject) as rejected:
        tasks.run("anyjob")
    assert rejected.value.requeue is True
