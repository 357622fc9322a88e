"""What a user does with a running ModelKiln, written once for both modes (distributed and
embedded): each function drives the REST API through :class:`app.client.ModelKilnClient`."""

from __future__ import annotations

import io
import time
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

from app.client import TERMINAL_STATUSES, ModelKilnClient

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (where, event latencies in seconds): the e2e conftest prints them in the terminal summary.
LATENCIES: list[tuple[str, list[float]]] = []


def gan_job(client: ModelKilnClient, epochs: int, batch_size: int = 64) -> dict[str, Any]:
    return client.create_job(
        "gan", {"name": "digits"}, {"epochs": epochs, "batch_size": batch_size}, seed=0
    )


def follow(client: ModelKilnClient, job_id: str) -> tuple[list[Any], list[float]]:
    """Every SSE event of the job up to ``end``, and the live events' latencies in seconds.

    Latency: from the event's ``created_at`` (when the worker's batch reached the store) to
    when this client parsed it; replayed history (written before we connected) is left out.
    """
    connected = time.time()
    events, latencies = [], []
    for ev in client.events(job_id):
        received = time.time()
        events.append(ev)
        if ev.event == "metrics":
            written = datetime.fromisoformat(ev.data["created_at"]).timestamp()
            if written >= connected:
                latencies.append(received - written)
    return events, latencies


def wait_status(client: ModelKilnClient, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job["status"] in TERMINAL_STATUSES:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {client.get_job(job_id)}")


def wait_step(
    client: ModelKilnClient, job_id: str, step: int, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job["status"] == "running" and _step(job) >= step:
            return job
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach step {step}: {client.get_job(job_id)}")


def _step(job: dict[str, Any]) -> int:
    return int(job["step"])


def loss_steps(client: ModelKilnClient, job_id: str, key: str) -> list[int]:
    """The step of every loss point carrying metric ``key``, over all pages, in seq order."""
    steps: list[int] = []
    after: int | None = 0
    while after is not None:
        page = client.losses(job_id, after=after, limit=1000)
        steps.extend(p["step"] for p in page["data"] if key in p["metrics"])
        after = page.get("next_after")
    return steps


def gan_streams_to_end_and_serves_a_png(client: ModelKilnClient) -> list[float]:
    """Submit a GAN on digits, follow its stream to ``end``, fetch a PNG grid of samples."""
    job = gan_job(client, epochs=3)
    events, latencies = follow(client, job["id"])

    assert events[-1].event == "end" and events[-1].data["status"] == "succeeded", events[-1]
    seqs = [e.id for e in events if e.id is not None]
    assert seqs == list(range(1, len(seqs) + 1))  # the stream has no gap and no duplicate
    steps = [e.data["step"] for e in events if e.event == "metrics" and "d_loss" in e.data["data"]]
    done = client.get_job(job["id"])
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == _total(done) > 0

    png = client.samples(job["id"], n=64, seed=7, nrow=8, format="png")
    assert png.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
    with Image.open(io.BytesIO(png)) as img:
        size = img.size
    from ml.images import grid_png

    with Image.open(io.BytesIO(grid_png(np.zeros((64, 1, 8, 8), np.float32), nrow=8))) as ref:
        assert size == ref.size  # 8 x 8 cells of upscaled 8x8 digits
    assert size[0] >= 8 * 32 and size[0] == size[1]
    assert client.samples(job["id"], n=64, seed=7, nrow=8) == png  # same seed, same samples
    return latencies


def cnn_trains_and_predicts(client: ModelKilnClient) -> None:
    """Train a CNN on digits, then classify validation digits through ``/predict``."""
    from ml.datasets import load_dataset
    from ml.specs import DatasetRef

    job = client.create_job("cnn", {"name": "digits"}, {"epochs": 3, "batch_size": 64}, seed=0)
    assert wait_status(client, job["id"])["status"] == "succeeded"

    data = load_dataset(DatasetRef(name="digits"))
    assert data.y_val is not None
    x, y = data.x_val[:40], data.y_val[:40]
    out = client.predict(job["id"], inputs=x.tolist())
    preds = out["predictions"]
    assert len(preds) == 40
    for p in preds:
        assert abs(sum(p["probabilities"]) - 1) < 1e-4
    accuracy = float(np.mean([p["class_index"] for p in preds] == y))
    assert accuracy >= 0.7, f"a 3-epoch digits CNN should beat 70 %, got {accuracy:.0%}"


def cancel_a_running_job(client: ModelKilnClient) -> None:
    """Cancel mid-training: it ends ``cancelled`` and keeps its checkpoint and losses."""
    job = gan_job(client, epochs=500, batch_size=32)
    wait_step(client, job["id"], 10)
    client.cancel_job(job["id"])
    done = wait_status(client, job["id"], timeout=60)

    assert done["status"] == "cancelled"
    steps = loss_steps(client, job["id"], "d_loss")
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 10
    assert len(steps) < _total(done)
    # The checkpoint of the step it stopped at is kept and usable.
    png = client.samples(job["id"], n=16, nrow=4)
    assert png.startswith(PNG_MAGIC)


def _total(job: dict[str, Any]) -> int:
    return int(job["total_steps"])
