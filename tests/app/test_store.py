"""The job store on real SQLite and real PostgreSQL: states, event sequences, pagination."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from app.db import utcnow
from app.store import EventIn, InvalidCursor, JobStatus, JobStore
from ml.specs import CNNSpec, DatasetRef, GANSpec, NeuronSpec

from .conftest import age_worker, beat


def neuron() -> NeuronSpec:
    return NeuronSpec(dataset=DatasetRef(name="moons"), name="n")


def metrics(step: int, **values: float) -> EventIn:
    return EventIn(kind="metrics", step=step, epoch=1, total_steps=100, data=values)


def test_create_and_get(store: JobStore) -> None:
    job = store.create_job(neuron(), queue="cpu")
    assert job.status is JobStatus.queued
    assert len(job.id) == 12
    got = store.get_job(job.id)
    assert got is not None
    assert got.spec == neuron()
    assert (got.model, got.dataset, got.queue, got.name) == ("neuron", "moons", "cpu", "n")
    assert got.created_at.tzinfo is not None
    assert store.get_job("nope") is None


def test_claim_is_once_and_only_from_queued(store: JobStore) -> None:
    job = store.create_job(neuron())
    claimed = store.claim(job.id, "w1", "cpu")
    assert claimed is not None
    assert (claimed.status, claimed.worker, claimed.device, claimed.attempts) == (
        JobStatus.running,
        "w1",
        "cpu",
        1,
    )
    assert claimed.started_at is not None
    assert store.claim(job.id, "w2", "cpu") is None
    assert store.claim("missing", "w1", "cpu") is None
    cancelled = store.create_job(neuron())
    store.request_cancel(cancelled.id)
    assert store.claim(cancelled.id, "w1", "cpu") is None
    [ev] = store.events_after(job.id, 0, 10)
    assert (ev.seq, ev.kind, ev.data["status"], ev.data["worker"]) == (1, "status", "running", "w1")


def test_append_events_numbers_and_progress(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.claim(job.id, "w", "cpu")  # seq 1
    last = store.append_events(
        job.id,
        [
            metrics(1, loss=0.9, accuracy=0.5),
            metrics(2, loss=0.4, accuracy=0.7),
            metrics(3, loss=0.6, accuracy=0.6),
        ],
    )
    assert last == 4
    assert [e.seq for e in store.events_after(job.id, 0, 100)] == [1, 2, 3, 4]
    got = store.get_job(job.id)
    assert got is not None
    assert (got.step, got.epoch, got.total_steps) == (3, 1, 100)
    assert got.metrics == {"loss": 0.6, "accuracy": 0.6}
    assert got.best_metrics == {"loss": 0.4, "accuracy": 0.7}
    assert store.append_events(job.id, []) == 0
    assert store.append_events("missing", [metrics(1, loss=1.0)]) == 0


def test_append_events_progress_from_a_mixed_batch(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.append_events(job.id, [metrics(1, loss=0.5, val_accuracy=0.8)])
    last = store.append_events(
        job.id,
        [
            metrics(2, loss=0.7, val_accuracy=0.6, lr=0.1, flag=True, note="x"),  # type: ignore[arg-type]
            EventIn(kind="checkpoint", step=3, epoch=2, data={"path": "checkpoint"}),
            EventIn(kind="status", data={"status": "running"}),  # moves no progress
        ],
    )
    assert last == 4
    events = store.events_after(job.id)
    assert [(e.seq, e.kind, e.step) for e in events] == [
        (1, "metrics", 1),
        (2, "metrics", 2),
        (3, "checkpoint", 3),
        (4, "status", 0),
    ]
    assert events[1].data == {
        "loss": 0.7,
        "val_accuracy": 0.6,
        "lr": 0.1,
        "flag": True,
        "note": "x",
    }
    got = store.get_job(job.id)
    assert got is not None
    # Progress from the last non-status event; total_steps 0 leaves the known total alone.
    assert (got.step, got.epoch, got.total_steps, got.last_seq) == (3, 2, 100, 4)
    # Latest: numbers only (not bools, not strings); best: losses down, accuracies up, only.
    assert got.metrics == {"loss": 0.7, "val_accuracy": 0.6, "lr": 0.1}
    assert got.best_metrics == {"loss": 0.5, "val_accuracy": 0.8}
    assert store.append_events(job.id, [EventIn(kind="status", data={})]) == 5
    assert store.get_job(job.id).step == 3  # type: ignore[union-attr]


def test_appended_events_are_stored_as_json_objects_with_one_time_per_batch(
    store: JobStore,
) -> None:
    # append_events writes `data` as JSON text (cast to JSONB on PostgreSQL): the database
    # must hold an object, not a JSON string, and SQL's JSON functions must see its fields.
    job = store.create_job(neuron())
    before = utcnow()
    store.append_events(
        job.id,
        [
            metrics(1, loss=0.25, accuracy=0.5),
            EventIn(kind="checkpoint", step=1, epoch=1, data={"path": 'ckpt/ü "q"'}),
        ],
    )
    postgres = store.engine.dialect.name == "postgresql"
    json_type = "jsonb_typeof(data)" if postgres else "json_type(data)"
    loss = "(data->>'loss')" if postgres else "json_extract(data, '$.loss')"
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {json_type}, {loss} FROM job_events WHERE job_id = :j ORDER BY seq"),
            {"j": job.id},
        ).all()
    assert [r[0] for r in rows] == ["object", "object"]
    assert float(rows[0][1]) == 0.25
    assert rows[1][1] is None
    first, second = store.events_after(job.id)
    assert second.data == {"path": 'ckpt/ü "q"'}
    assert first.created_at == second.created_at  # the batch's one timestamp
    assert before <= first.created_at <= utcnow()


def test_concurrent_appends_and_status_events_have_no_gap(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.claim(job.id, "w", "cpu")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(15):
                store.append_events(job.id, [metrics(i, loss=1.0), metrics(i, loss=0.5)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def canceller() -> None:
        try:
            for _ in range(10):
                store.request_cancel(job.id)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)] + [
        threading.Thread(target=canceller)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = [e.seq for e in store.events_after(job.id, 0, 1000)]
    assert seqs == list(range(1, 1 + 1 + 2 * 15 * 2))
    assert store.cancel_requested(job.id)


def test_cancel_queued_is_immediate_running_sets_flag(store: JobStore) -> None:
    queued = store.create_job(neuron())
    after = store.request_cancel(queued.id)
    assert after is not None and after.status is JobStatus.cancelled
    assert after.finished_at is not None
    assert [e.data for e in store.events_after(queued.id)] == [{"status": "cancelled"}]

    running = store.create_job(neuron())
    store.claim(running.id, "w", "cpu")
    assert not store.cancel_requested(running.id)
    after = store.request_cancel(running.id)
    assert after is not None and after.status is JobStatus.running and after.cancel_requested
    assert store.cancel_requested(running.id)
    assert store.request_cancel("missing") is None


def test_finish_and_requeue(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.claim(job.id, "w1", "cpu")
    assert store.requeue(job.id)
    again = store.get_job(job.id)
    assert again is not None and again.status is JobStatus.queued and again.worker is None
    assert not store.requeue(job.id)  # only a running job
    assert store.claim(job.id, "w2", "cpu") is not None
    store.finish(job.id, JobStatus.failed, error="loss became nan at step 3")
    done = store.get_job(job.id)
    assert done is not None
    assert (done.status, done.error, done.attempts) == (
        JobStatus.failed,
        "loss became nan at step 3",
        2,
    )
    assert done.finished_at is not None and done.terminal
    statuses = [e.data["status"] for e in store.events_after(job.id) if e.kind == "status"]
    assert statuses == ["running", "queued", "running", "failed"]
    with pytest.raises(ValueError):
        store.finish(job.id, "running")


def test_drop_events_after_keeps_seq_counter(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.claim(job.id, "w", "cpu")
    store.append_events(job.id, [metrics(s, loss=1.0 / s) for s in range(1, 6)])  # seqs 2..6
    assert store.drop_events_after(job.id, 3) == 2
    assert [e.step for e in store.events_after(job.id, 0, 100, kinds=["metrics"])] == [1, 2, 3]
    got = store.get_job(job.id)
    assert got is not None and got.step == 3
    assert store.append_events(job.id, [metrics(4, loss=0.2)]) == 7  # no seq reused


def test_events_after_pages(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.append_events(job.id, [metrics(s, loss=1.0) for s in range(1, 11)])
    assert [e.seq for e in store.events_after(job.id, 3, 4)] == [4, 5, 6, 7]
    assert store.events_after(job.id, 10, 5) == []


def test_list_jobs_newest_first_filters_and_cursor(store: JobStore) -> None:
    ids = [store.create_job(neuron()).id for _ in range(5)]
    cnn = store.create_job(CNNSpec(dataset=DatasetRef(name="digits")))
    gan = store.create_job(GANSpec(dataset=DatasetRef(name="ring8")))
    store.request_cancel(gan.id)
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_jobs(cursor=cursor, limit=3)
        seen += [j.id for j in page.data]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [gan.id, cnn.id, *reversed(ids)]
    assert [j.id for j in store.list_jobs(model="cnn").data] == [cnn.id]
    assert [j.id for j in store.list_jobs(status="cancelled").data] == [gan.id]
    assert store.list_jobs(status="running").data == []
    with pytest.raises(InvalidCursor):
        store.list_jobs(cursor="not-a-cursor")
    counts = store.count_by_status()
    assert counts["queued"] == 6 and counts["cancelled"] == 1 and counts["failed"] == 0


def test_delete_job_removes_events(store: JobStore) -> None:
    job = store.create_job(neuron())
    store.append_events(job.id, [metrics(1, loss=1.0)])
    assert store.delete_job(job.id)
    assert store.get_job(job.id) is None
    assert store.events_after(job.id) == []
    assert not store.delete_job(job.id)


def test_datasets_table(store: JobStore) -> None:
    rec = store.add_dataset(
        "abc",
        name="mine",
        filename="mine.csv",
        kind="tabular",
        size_bytes=10,
        info={"num_classes": 2},
    )
    assert store.get_dataset("abc") == rec
    assert [d.id for d in store.list_datasets()] == ["abc"]
    assert store.get_dataset("zzz") is None


def test_heartbeat_inserts_then_refreshes_one_row_per_worker(store: JobStore) -> None:
    started = utcnow()
    beat(store, "cpu.1@a", started_at=started)
    beat(store, "gpu.2@b", queues=("cpu", "gpu"), device="cuda", pid=2, job_id="j1")
    [a, b] = store.live_workers(15)
    assert (a.name, a.hostname, a.queues, a.device, a.pid, a.job_id) == (
        "cpu.1@a",
        "host",
        ("cpu",),
        "cpu",
        4242,
        None,
    )
    assert a.started_at == started and a.last_seen.tzinfo is not None
    assert (b.name, b.queues, b.device, b.job_id) == ("gpu.2@b", ("cpu", "gpu"), "cuda", "j1")

    age_worker(store, "cpu.1@a", 5)
    beat(store, "cpu.1@a", started_at=started, job_id="j2")  # an upsert, not a second row
    [again] = [w for w in store.live_workers(15) if w.name == "cpu.1@a"]
    assert again.job_id == "j2" and again.started_at == started
    assert again.last_seen > a.last_seen
    assert len(store.live_workers(15)) == 2


def test_live_workers_leaves_out_stale_heartbeats(store: JobStore) -> None:
    beat(store, "busy@a", job_id="j1")
    beat(store, "gone@b")
    age_worker(store, "gone@b", 20)
    assert [w.name for w in store.live_workers(15)] == ["busy@a"]
    assert [w.name for w in store.live_workers(30)] == ["busy@a", "gone@b"]
    age_worker(store, "busy@a", 16)
    assert store.live_workers(15) == []


def test_remove_and_prune_workers(store: JobStore) -> None:
    beat(store, "a@h")
    beat(store, "b@h")
    beat(store, "c@h")
    age_worker(store, "c@h", 7200)
    assert store.remove_worker("a@h")
    assert not store.remove_worker("a@h")
    assert store.prune_workers(3600) == 1  # c: silent for two hours
    assert [w.name for w in store.live_workers(3600 * 24)] == ["b@h"]
