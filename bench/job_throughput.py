"""Step throughput of real jobs on each device: ``python -m bench.job_throughput``.

The service as a user runs it: ``modelkiln api`` and one ``modelkiln worker`` per device
(``--queues cpu``; ``--queues gpu`` where CUDA is present), sharing a fresh embedded home
(SQLite job store and broker, so no Redis or PostgreSQL is needed and it runs as is on a GPU
box). The documented example jobs (``ml.specs.EXAMPLES``: the GAN and the CNN on ``digits``,
default hyperparameters) are submitted through the REST API, once per device, one job at a
time so that no two share the machine, and followed on their event stream to the end.

Per job it reports the steps, the wall time from ``started_at`` to ``finished_at`` (data,
model, CUDA start-up, checkpoints and progress images included) and the steady throughput:
steps per second from the end of the first epoch to the last step (checkpoints and images
still included), timed by the commit times of the step events. The bench's workers flush
events every :data:`FLUSH_S` (the service's default is 0.25 s), so that span is good to about
a tenth of a second.

    python -m bench.job_throughput                      # cpu, and cuda if present
    python -m bench.job_throughput --devices cpu,cuda --cpu-threads 4 --epochs gan=10
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.client import ModelKilnClient
from ml.specs import EXAMPLES

FLUSH_S = 0.05  # MODELKILN_EVENT_FLUSH_INTERVAL_S for the bench's workers
QUEUE_OF = {"cpu": "cpu", "cuda": "gpu"}
JOB_TIMEOUT_S = 1800.0


@dataclass
class Row:
    model: str
    device: str  # what the job reports it ran on, e.g. cpu or cuda:0
    steps: int
    wall_s: float
    steady_steps: int
    steady_s: float
    metrics: dict[str, float]
    error: str | None = None  # why the job failed (its other fields are then zeros)

    @property
    def steps_per_s(self) -> float:
        return self.steady_steps / self.steady_s if self.steady_s > 0 else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def modelkiln(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``modelkiln ARGS`` run by this interpreter, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_healthy(client: ModelKilnClient, procs: Sequence[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a modelkiln process exited while starting; see its log")
        try:
            client.health()
            return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError("the API did not answer /healthz within 120 s")


def job_spec(model: str, device: str, epochs: int | None) -> dict[str, Any]:
    spec = {**EXAMPLES[model], "device": device}
    if epochs is not None:
        spec["hyperparams"] = {**dict(spec["hyperparams"]), "epochs": epochs}
    return spec


def run_job(client: ModelKilnClient, spec: dict[str, Any]) -> Row:
    """Submit ``spec``, follow its events to the end, and time it."""
    job = client.create_job(
        spec["model"], spec["dataset"], spec["hyperparams"], device=spec["device"]
    )
    steps: list[tuple[int, int, datetime]] = []  # (step, epoch, committed at) of step events
    deadline = time.monotonic() + JOB_TIMEOUT_S
    for event in client.events(job["id"]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['id']} ran over {JOB_TIMEOUT_S:.0f} s")
        data = event.data if isinstance(event.data, dict) else {}
        if event.event == "metrics" and "created_at" in data:
            steps.append((data["step"], data["epoch"], datetime.fromisoformat(data["created_at"])))
    job = client.get_job(job["id"])
    if job["status"] != "succeeded":
        error = f"{job['status']}: {job['error']}"
        return Row(spec["model"], spec["device"], job["step"], 0.0, 0, 0.0, {}, error)
    last = max(steps, key=lambda s: s[0])
    # From the end of the first epoch (start-up and first-use costs stay out); a one-epoch
    # job can only be timed from its first step.
    epoch1 = [s for s in steps if s[1] == 1]
    first = max(epoch1) if last[1] > 1 else min(epoch1)
    started, finished = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return Row(
        model=spec["model"],
        device=job["device"],
        steps=job["step"],
        wall_s=(finished - started).total_seconds(),
        steady_steps=last[0] - first[0],
        steady_s=(last[2] - first[2]).total_seconds(),
        metrics=job["metrics"],
    )


def measure(
    devices: Sequence[str], models: Sequence[str], epochs: dict[str, int], cpu_threads: int | None
) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="modelkiln-bench-") as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKILN_")}
        env.update(MODELKILN_HOME=str(home), MODELKILN_EVENT_FLUSH_INTERVAL_S=str(FLUSH_S))
        port = free_port()
        procs = [modelkiln("api", "--port", str(port), env=env, log=home / "api.log")]
        try:
            with ModelKilnClient(f"http://127.0.0.1:{port}") as client:
                wait_healthy(client, procs)  # the API migrates the store before workers start
                for device in devices:
                    threads = ["--threads", str(cpu_threads)] if cpu_threads else []
                    args = ["worker", "--queues", QUEUE_OF[device]]
                    log = home / f"worker-{device}.log"
                    procs.append(
                        modelkiln(*args, *(threads if device == "cpu" else []), env=env, log=log)
                    )
                return [
                    run_job(client, job_spec(model, device, epochs.get(model)))
                    for model in models
                    for device in devices
                ]
        except Exception:
            stop(procs)
            for log in sorted(home.glob("*.log")):
                sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}\n")
            raise
        finally:
            stop(procs)


def table(rows: Sequence[Row], cpu_threads: int | None) -> str:
    threads = cpu_threads or "the worker's default, 1"
    lines = [
        "job throughput: the example jobs on digits through the API and one worker per "
        f"device (embedded store), one at a time; cpu torch threads: {threads}",
        f"{'job':<6} {'device':<8} {'steps':>6} {'wall s':>7} {'steps/s':>8} "
        f"{'ms/step':>8}  final metrics",
    ]
    lines.append("-" * len(lines[1]) + "-" * 30)
    for r in rows:
        if r.error:
            lines.append(f"{r.model:<6} {r.device:<8} {r.error}")
            continue
        final = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r.metrics.items()))
        lines.append(
            f"{r.model:<6} {r.device:<8} {r.steps:>6} {r.wall_s:>7.1f} {r.steps_per_s:>8.1f} "
            f"{1000 / r.steps_per_s:>8.2f}  {final}"
        )
    for model in dict.fromkeys(r.model for r in rows):
        by_device = {r.device.split(":")[0]: r for r in rows if r.model == model and not r.error}
        if "cpu" in by_device and "cuda" in by_device:
            cpu, gpu = by_device["cpu"], by_device["cuda"]
            lines.append(
                f"{model}: cuda/cpu steps per second {gpu.steps_per_s / cpu.steps_per_s:.2f}x, "
                f"wall time {cpu.wall_s / gpu.wall_s:.2f}x"
            )
    return "\n".join(lines)


def default_devices() -> str:
    import torch

    return "cpu,cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default=None, help="cpu and/or cuda (default: all present)")
    parser.add_argument("--models", default="gan,cnn", help="of the examples: gan, cnn, neuron")
    parser.add_argument(
        "--epochs", default="", help="override per model, e.g. gan=10,cnn=3 (default: example's)"
    )
    parser.add_argument("--cpu-threads", type=int, default=None, help="the cpu worker's --threads")
    args = parser.parse_args(argv)
    devices = [d for d in (args.devices or default_devices()).split(",") if d]
    models = [m for m in args.models.split(",") if m]
    epochs = {k: int(v) for k, v in (kv.split("=") for kv in args.epochs.split(",") if kv)}
    bad = sorted(set(devices) - set(QUEUE_OF)) + sorted(set(models) - set(EXAMPLES))
    if bad:
        parser.error(f"unknown device or model: {', '.join(bad)}")
    print(table(measure(devices, models, epochs, args.cpu_threads), args.cpu_threads), flush=True)


if __name__ == "__main__":
    main()
