"""The ``jobs.run`` task's work, called directly on a real SQLite store (no broker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import ml.training
from app.settings import Settings
from app.store import EventIn, JobStatus, JobStore
from ml.errors import DatasetError
from ml.events import EventKind, TrainEvent
from tests.worker.helpers import Resends, StopAfter, final, neuron_spec, run, step_metrics
from worker.runner import EventSink, Outcome, checkpoint_step


def test_a_tiny_neuron_job_succeeds_with_consecutive_seqs(
    store: JobStore, settings: Settings
) -> None:
    job = store.create_job(neuron_spec(epochs=2))

    assert run(job.id, store, settings) is Outcome.succeeded

    done = final(store, job.id)
    assert done.status is JobStatus.succeeded
    assert (done.step, done.total_steps, done.attempts) == (16, 16, 1)
    assert done.worker == "test-worker"
    events = store.events_after(job.id, 0, limit=10_000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].data["status"] == "running" and events[-1].data["status"] == "succeeded"
    assert [s for s, _ in step_metrics(store, job.id)] == list(range(1, 17))
    val = [e for e in events if "val_loss" in e.data]
    assert [e.step for e in val] == [8, 16]  # one validation event per epoch
    assert checkpoint_step(settings.runs_dir / job.id) == 16
    assert "loss" in done.metrics and "val_accuracy" in done.best_metrics


def test_a_cancel_flag_set_mid_run_stops_it_and_keeps_checkpoint_and_losses(
    store: JobStore, settings: Settings
) -> None:
    job = store.create_job(neuron_spec(epochs=1000, batch_size=8))  # 57,000 steps: minutes
    outcome: list[Outcome] = []
    worker = threading.Thread(target=lambda: outcome.append(run(job.id, store, settings)))
    worker.start()
    _wait_for(lambda: final(store, job.id).step >= 20)
    store.request_cancel(job.id)
    worker.join(timeout=30)

    assert not worker.is_alive(), "the job did not stop after its cancel flag was set"
    assert outcome == [Outcome.cancelled]
    done = final(store, job.id)
    assert done.status is JobStatus.cancelled and done.step < done.total_steps
    ckpt_step = checkpoint_step(settings.runs_dir / job.id)
    losses = step_metrics(store, job.id)
    # The checkpoint is of the step it stopped at, and every loss up to it is kept.
    assert ckpt_step == done.step == losses[-1][0]
    assert [s for s, _ in losses] == list(range(1, ckpt_step + 1))


def test_the_loop_stops_at_the_step_where_the_cancel_flag_is_seen(
    store: JobStore, settings: Settings, tmp_path: Path
) -> None:
    job = store.create_job(neuron_spec(epochs=50, batch_size=8))
    sink = EventSink(
        store, job.id, interval_s=10, run_dir=tmp_path / "run", shutdown=threading.Event()
    )

    def on_event(event: TrainEvent) -> None:
        sink.on_event(event)
        if event.kind is EventKind.metrics and event.step == 10:
            sink.cancelled.set()  # what the flusher thread does when the store says cancel

    result = ml.training.train(job.spec, on_event, sink.should_stop, tmp_path / "run")

    assert result.step == 10  # stopped after the very step it was set in
    assert checkpoint_step(tmp_path / "run") == 10


def test_the_flusher_reads_the_cancel_flag_from_the_store(store: JobStore, tmp_path: Path) -> None:
    job = store.create_job(neuron_spec())
    store.claim(job.id, "w", "cpu")
    sink = EventSink(store, job.id, interval_s=0.01, run_dir=tmp_path, shutdown=threading.Event())
    sink.start()
    try:
        assert not sink.should_stop()
        store.request_cancel(job.id)
        assert sink.cancelled.wait(timeout=5)
        assert sink.should_stop()
    finally:
        sink.close()


def test_a_job_cancelled_while_queued_never_starts(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = store.create_job(neuron_spec())
    store.request_cancel(job.id)

    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cancelled job was trained")

    monkeypatch.setattr(ml.training, "train", must_not_train)
    assert run(job.id, store, settings) is Outcome.skipped

    done = final(store, job.id)
    assert done.status is JobStatus.cancelled and done.attempts == 0 and done.worker is None
    assert [e.data["status"] for e in store.events_after(job.id)] == ["cancelled"]
    assert not (settings.runs_dir / job.id).exists()


def test_an_unknown_job_is_skipped(store: JobStore, settings: Settings) -> None:
    assert run("doesnotexist", store, settings) is Outcome.skipped


def test_an_ml_error_fails_the_job_with_its_message(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = store.create_job(neuron_spec())

    def bad_dataset(*args: object, **kwargs: object) -> None:
        raise DatasetError("dataset 'no_such_dataset' is unknown; built-in: digits, ...")

    monkeypatch.setattr(ml.training, "train", bad_dataset)
    assert run(job.id, store, settings) is Outcome.failed
    done = final(store, job.id)
    assert done.status is JobStatus.failed
    assert done.error == "dataset 'no_such_dataset' is unknown; built-in: digits, ..."
    assert store.events_after(job.id)[-1].data == {"status": "failed", "error": done.error}


def test_a_real_dataset_error_from_ml_reaches_the_job(store: JobStore, settings: Settings) -> None:
    from ml.datasets import load_dataset
    from ml.specs import DatasetRef

    job = store.create_job(neuron_spec(dataset={"name": "no_such_dataset"}))
    with pytest.raises(DatasetError) as expected:
        load_dataset(DatasetRef(name="no_such_dataset"))

    assert run(job.id, store, settings) is Outcome.failed
    assert final(store, job.id).error == str(expected.value)


def test_an_unexpected_error_fails_the_job_with_a_short_message(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = store.create_job(neuron_spec())

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA went away")

    monkeypatch.setattr(ml.training, "train", crash)
    assert run(job.id, store, settings) is Outcome.failed
    done = final(store, job.id)
    assert done.status is JobStatus.failed
    assert done.error is not None
    assert done.error.startswith("internal error (RuntimeError: CUDA went away)")
    assert len(done.error) < 300


def test_events_are_written_in_batches_not_one_write_per_step(
    store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real_append = store.append_events

    def spy(job_id: str, events: list[EventIn]) -> int:
        batches.append(len(events))
        return real_append(job_id, events)

    monkeypatch.setattr(store, "append_events", spy)
    job = store.create_job(neuron_spec(epochs=20, batch_size=8))  # 1,140 steps
    settings.event_flush_interval_s = 0.2

    assert run(job.id, store, settings) is Outcome.succeeded

    steps = len(step_metrics(store, job.id))
    assert steps == 1140
    assert sum(batches) == len(store.events_after(job.id, 0, 100_000, kinds=["metrics"])) + 20
    assert len(batches) <= steps // 20, f"{len(batches)} writes for {steps} steps"
    assert max(batches) > 50


def test_a_worker_shutdown_checkpoints_requeues_and_another_worker_resumes(
    store: JobStore, settings: Settings
) -> None:
    reference = store.create_job(neuron_spec(epochs=3))
    assert run(reference.id, store, settings) is Outcome.succeeded
    job = store.create_job(neuron_spec(epochs=3))  # 24 steps; the flag turns on at step 11
    resends = Resends()

    first = run(job.id, store, settings, shutdown=StopAfter(11), resend=resends, worker="a")

    assert first is Outcome.requeued
    assert resends.calls == [(job.id, "cpu")]
    paused = final(store, job.id)
    assert paused.status is JobStatus.queued and paused.worker is None
    stopped_at = checkpoint_step(settings.runs_dir / job.id)
    assert 0 < stopped_at < 24
    assert [s for s, _ in step_metrics(store, job.id)] == list(range(1, stopped_at + 1))

    assert run(job.id, store, settings, worker="b") is Outcome.succeeded

    done = final(store, job.id)
    assert done.status is JobStatus.succeeded and done.attempts == 2 and done.worker == "b"
    losses = step_metrics(store, job.id)
    assert [s for s, _ in losses] == list(range(1, 25))  # no gap, no duplicate
    # Resuming from the checkpoint is exact: the same losses as a run never stopped.
    assert losses == step_metrics(store, reference.id)
    statuses = [e.data["status"] for e in store.events_after(job.id, kinds=["status"])]
    assert statuses == ["running", "queued", "running", "succeeded"]


def test_a_worker_already_shutting_down_hands_the_job_on_without_claiming(
    store: JobStore, settings: Settings
) -> None:
    job = store.create_job(neuron_spec(), queue="gpu")
    shutdown = threading.Event()
    shutdown.set()
    resends = Resends()

    assert run(job.id, store, settings, shutdown=shutdown, resend=resends) is Outcome.deferred
    assert resends.calls == [(job.id, "gpu")]
    assert final(store, job.id).status is JobStatus.queued


def test_a_redelivered_job_of_a_dead_worker_resumes_from_its_checkpoint(
    store: JobStore, settings: Settings
) -> None:
    job = store.create_job(neuron_spec(epochs=3))
    # Worker "a" ran to step 11 and checkpointed, then "died": its later events were written
    # but no checkpoint covers them, and the job row still says running on "a".
    run(job.id, store, settings, shutdown=StopAfter(11), worker="a")
    stopped_at = checkpoint_step(settings.runs_dir / job.id)
    assert store.claim(job.id, "a", "cpu") is not None
    store.append_events(
        job.id,
        [EventIn("metrics", stopped_at + k, 2, 24, {"loss": 9.0}) for k in (1, 2, 3)],
    )

    assert run(job.id, store, settings, worker="b") is Outcome.skipped  # not redelivered: busy
    assert run(job.id, store, settings, worker="b", redelivered=True) is Outcome.succeeded

    losses = step_metrics(store, job.id)
    assert [s for s, _ in losses] == list(range(1, 25))
    assert 9.0 not in [v for _, v in losses]
    assert final(store, job.id).status is JobStatus.succeeded


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for a condition")


def test_the_same_worker_takes_its_own_running_job_back_after_losing_the_store(
    store: JobStore, settings: Settings
) -> None:
    job = store.create_job(neuron_spec(epochs=2))
    run(job.id, store, settings, shutdown=StopAfter(5), worker="a")
    assert store.claim(job.id, "a", "cpu") is not None  # "a" claimed it, then lost the store

    assert run(job.id, store, settings, worker="a") is Outcome.succeeded
    assert [s for s, _ in step_metrics(store, job.id)] == list(range(1, 17))
