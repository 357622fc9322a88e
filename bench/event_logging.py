"""What logging costs a training step: ``on_event`` + ``should_stop`` + the flusher thread.

Each model kind's example job (``ml.specs.EXAMPLES``: default hyperparameters, fewer epochs
for the CNN and GAN) is trained in this process, alternating, a few times each way:

* **bare** — ``ml.train`` with a no-op ``on_event`` and a ``should_stop`` that never stops;
* **logged** — the worker's :class:`~worker.runner.EventSink` at the default flush interval
  (``event_flush_interval_s``), writing every event to a real SQLite job store (the embedded
  mode's store), the final write included.

Two overheads are reported. *wall* compares per-step wall times two ways: *best*, the
lowest of each way (noise only ever adds time), and *paired*, the median over the
alternated bare/logged pairs of logged/bare − 1 (neighbouring runs share the machine's
state, so drift cancels); on a shared machine both still move by a few percent, hence
more repetitions for the short neuron runs. *cpu* is steadier: the CPU time logging itself
used (the training thread's ``on_event`` + ``should_stop`` calls, and the flusher thread's
store writes and cancel reads), per step, over the bare step time — an upper bound on the
slowdown if the flusher never ran beside the training thread. The bench's own bookkeeping
(each event's wait, below) runs on the flusher thread; it is measured and left out. Also
shown: store writes per run, and how long an event waited in the worker before its batch was
committed (the worker's share of the event latency; the API's SSE poll adds the rest).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.db import create_engine_for, migrate
from app.settings import Settings
from app.store import EventIn, JobStore
from ml.events import TrainEvent, never_stop, noop_event
from ml.specs import EXAMPLES, AnySpec
from ml.training import parse_spec, train
from worker.runner import EventSink

# The documented example of each kind; epochs cut so that each run takes a second or two.
EPOCHS = {"neuron": 100, "cnn": 5, "gan": 10}
JOBS: dict[str, dict[str, Any]] = {
    name: {**example, "hyperparams": {**dict(example["hyperparams"]), "epochs": EPOCHS[name]}}  # type: ignore[call-overload]
    for name, example in EXAMPLES.items()
}
REPEATS = {"neuron": 21, "cnn": 7, "gan": 5}  # bare/logged pairs per model


@dataclass
class Row:
    model: str
    steps: int
    bare_ms: float
    logged_ms: float
    paired_pct: float  # median over the pairs of (logged / bare - 1), in %
    call_us: float
    flusher_cpu_us: float  # flusher CPU per step
    writes: int
    wait_ms_median: float
    wait_ms_max: float

    @property
    def wall_pct(self) -> float:
        return 100 * (self.logged_ms - self.bare_ms) / self.bare_ms

    @property
    def cpu_us(self) -> float:
        return self.call_us + self.flusher_cpu_us

    @property
    def cpu_pct(self) -> float:
        return 100 * self.cpu_us / (self.bare_ms * 1000)


def _bare(spec: AnySpec, run_dir: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = train(spec, noop_event, never_stop, run_dir / "bare", resume=False)
    return time.perf_counter() - started, result.step


def _logged(
    spec: AnySpec, run_dir: Path, store: JobStore, settings: Settings
) -> tuple[float, int, int, list[float], float]:
    job = store.create_job(spec)
    store.claim(job.id, "bench", "cpu")
    births: list[float] = []  # when each event was produced; the sink writes them in order
    waits: list[float] = []
    bookkeeping = [0.0]  # the CPU this measuring took on the flusher: not logging's cost
    real_append = store.append_events

    def timed_append(job_id: str, events: Sequence[EventIn]) -> int:
        last = real_append(job_id, events)
        started = time.thread_time()
        now = time.perf_counter()
        done = len(waits)
        waits.extend(now - born for born in births[done : done + len(events)])
        bookkeeping[0] += time.thread_time() - started
        return last

    sink = EventSink(
        store,
        job.id,
        interval_s=settings.event_flush_interval_s,
        run_dir=run_dir / "logged",
        shutdown=threading.Event(),
    )
    store.append_events = timed_append  # type: ignore[method-assign]
    cpu = [0.0]  # seconds of CPU the flusher's work took, on whichever thread ran it
    for method in ("flush", "poll_cancel"):
        setattr(sink, method, _cpu_timed(getattr(sink, method), cpu))

    def on_event(ev: TrainEvent) -> None:
        births.append(time.perf_counter())
        sink.on_event(ev)

    sink.start()
    started = time.perf_counter()
    result = train(spec, on_event, sink.should_stop, run_dir / "logged", resume=False)
    sink.close()  # the last write is part of the cost
    elapsed = time.perf_counter() - started
    store.append_events = real_append  # type: ignore[method-assign]
    return elapsed, result.step, sink.flushes, waits, cpu[0] - bookkeeping[0]


def _cpu_timed(fn: Any, total: list[float]) -> Any:
    def timed(*args: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args)
        finally:
            total[0] += time.thread_time() - started

    return timed


def _call_cost_us(store: JobStore) -> float:
    """One ``on_event`` + ``should_stop`` on the training thread (the flusher not running)."""
    sink = EventSink(store, "x", interval_s=60, run_dir=Path("."), shutdown=threading.Event())
    ev = TrainEvent("metrics", 1, 1, 100, {"loss": 0.5, "accuracy": 0.9})  # type: ignore[arg-type]
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        sink.on_event(ev)
        sink.should_stop()
    return (time.perf_counter() - started) / n * 1e6


def measure(models: list[str] | None = None) -> list[Row]:
    import torch

    torch.set_num_threads(1)  # as `modelkiln worker` runs it
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            home=root, database_url=f"sqlite:///{root / 'store.db'}", broker_url="memory://"
        )
        migrate(settings)
        store = JobStore(create_engine_for(settings))
        call_us = _call_cost_us(store)
        for name in models or list(JOBS):
            spec = parse_spec(JOBS[name])
            _bare(spec, root / f"{name}-warmup")  # imports, dataset cache, allocator
            bare, logged, cpu, writes, waits = [], [], [], 0, []
            for i in range(REPEATS[name]):
                t, steps = _bare(spec, root / f"{name}-{i}")
                bare.append(t / steps)
                t, steps, writes, w, c = _logged(spec, root / f"{name}-{i}", store, settings)
                logged.append(t / steps)
                cpu.append(c / steps)
                waits.extend(w)
            rows.append(
                Row(
                    model=name,
                    steps=steps,
                    bare_ms=min(bare) * 1000,
                    logged_ms=min(logged) * 1000,
                    paired_pct=100
                    * statistics.median(lg / b - 1 for b, lg in zip(bare, logged, strict=True)),
                    call_us=call_us,
                    flusher_cpu_us=statistics.median(cpu) * 1e6,
                    writes=writes,
                    wait_ms_median=statistics.median(waits) * 1000,
                    wait_ms_max=max(waits) * 1000,
                )
            )
        store.engine.dispose()
    return rows


def table(rows: list[Row], interval_s: float) -> str:
    title = (
        f"event logging overhead: flush every {interval_s:g} s to SQLite, best of "
        f"n alternated bare/logged runs (wall paired, cpu: median), 1 torch thread"
    )
    head = (
        "model   steps   n  bare ms/step  logged ms/step  wall best  paired  "
        "logging cpu/step    cpu  writes/run  event wait in worker"
    )
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.model:<7}{r.steps:>6}{REPEATS[r.model]:>4}  {r.bare_ms:>12.3f}  "
            f"{r.logged_ms:>14.3f}  {r.wall_pct:>+8.1f}%  {r.paired_pct:>+5.1f}%  "
            f"{r.cpu_us:>13.1f} µs  {r.cpu_pct:>4.1f}%  "
            f"{r.writes:>10}  median {r.wait_ms_median:.0f} ms, max {r.wait_ms_max:.0f} ms"
        )
    lines.append(
        f"(on_event + should_stop on the training thread: {rows[0].call_us:.2f} µs a step)"
    )
    return "\n".join(lines)


def main() -> None:
    rows = measure()
    print(table(rows, Settings().event_flush_interval_s))


if __name__ == "__main__":
    main()
