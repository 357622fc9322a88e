"""What ``JobStore.append_events`` itself costs: CPU per call and per event, by batch size.

The worker's flusher writes whatever the training loop produced since the last flush in one
call, so batches run from one event (a slow GAN step) to thousands (a fast neuron between two
flushes). Each batch size is written ``REPEATS``-ish times to a fresh job on a real SQLite
store (the embedded mode's) and, with ``--pg URL``, to PostgreSQL; the figure is CPU time of
the calling thread (``time.thread_time``: the Python work and the driver's, not the wait for
the database server), so it is steady on a busy machine. Events look like a GAN step's:
four float metrics. On PostgreSQL it also reports what an event costs on disk: the
``job_events`` table with its index and TOAST (``pg_total_relation_size``) over its rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from app.db import create_engine_for, migrate
from app.settings import Settings
from app.store import EventIn, JobStore
from ml.specs import DatasetRef, NeuronSpec

BATCHES = (1, 10, 100, 1000)
EVENTS_PER_SIZE = 20_000  # events written per batch size (at least 20 calls)


def _events(n: int, first_step: int) -> list[EventIn]:
    return [
        EventIn(
            kind="metrics",
            step=first_step + i,
            epoch=1,
            total_steps=1_000_000,
            data={"d_loss": 1.3 - i * 1e-6, "g_loss": 0.7, "d_real": 0.55, "d_fake": 0.45},
        )
        for i in range(n)
    ]


def measure(store: JobStore) -> list[tuple[int, float]]:
    """(batch size, CPU µs per call) for each of :data:`BATCHES`."""
    rows = []
    for n in BATCHES:
        job = store.create_job(NeuronSpec(dataset=DatasetRef(name="moons")))
        store.claim(job.id, "bench", "cpu")
        calls = max(20, EVENTS_PER_SIZE // n)
        batches = [_events(n, 1 + i * n) for i in range(calls + 1)]
        store.append_events(job.id, batches.pop())  # warm: statement cache, connection
        started = time.thread_time()
        for batch in batches:
            store.append_events(job.id, batch)
        rows.append((n, (time.thread_time() - started) / calls * 1e6))
    return rows


def disk_bytes_per_event(store: JobStore) -> float:
    """PostgreSQL: bytes on disk per stored event (heap, index and TOAST of ``job_events``)."""
    with store.engine.connect() as conn:
        size, rows = conn.execute(
            text("SELECT pg_total_relation_size('job_events'), count(*) FROM job_events")
        ).one()
    return float(size) / max(1, int(rows))


def table(results: dict[str, list[tuple[int, float]]]) -> str:
    head = "store       batch   cpu µs/call   cpu µs/event"
    lines = ["append_events: CPU of the calling thread (time.thread_time)", head, "-" * len(head)]
    for backend, rows in results.items():
        for n, per_call in rows:
            lines.append(f"{backend:<10}{n:>7}  {per_call:>12.1f}  {per_call / n:>13.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_append")
    parser.add_argument("--pg", help="also measure on this PostgreSQL database (SQLAlchemy URL)")
    args = parser.parse_args(argv)
    results = {}
    disk: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'store.db'}"}
        if args.pg:
            urls["postgresql"] = args.pg
        for backend, url in urls.items():
            settings = Settings(home=Path(tmp), database_url=url, broker_url="memory://")
            migrate(settings)
            store = JobStore(create_engine_for(settings))
            try:
                results[backend] = measure(store)
                if backend == "postgresql":
                    disk = disk_bytes_per_event(store)
            finally:
                store.engine.dispose()
    print(table(results))
    if disk is not None:
        print(f"postgresql: {disk:.0f} bytes on disk per event (job_events, index included)")


if __name__ == "__main__":
    main()
