"""Distributed mode for real: `modelkiln api` and `modelkiln worker` processes on Redis and
PostgreSQL, driven over HTTP."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.e2e import flows
from tests.e2e.conftest import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_gan_streams_to_end_and_serves_a_png_grid(live_cluster: Cluster) -> None:
    with live_cluster.client() as api:
        latencies = flows.gan_streams_to_end_and_serves_a_png(api)
    flows.LATENCIES.append(("distributed (Redis + PostgreSQL)", latencies))


def test_a_cnn_trains_and_predicts(live_cluster: Cluster) -> None:
    with live_cluster.client() as api:
        flows.cnn_trains_and_predicts(api)


def test_cancelling_a_running_job_keeps_its_checkpoint_and_losses(live_cluster: Cluster) -> None:
    with live_cluster.client() as api:
        flows.cancel_a_running_job(api)


def test_readyz_and_metrics_see_busy_workers_by_their_heartbeats(live_cluster: Cluster) -> None:
    # Solo pool: a worker that is training answers no Celery ping. Occupy every worker, then
    # the API must still be ready and count them, from the heartbeats in the store.
    workers = live_cluster.live_workers()
    with live_cluster.client() as api:
        jobs = [flows.gan_job(api, epochs=500, batch_size=32) for _ in workers]
        try:
            for job in jobs:
                flows.wait_step(api, job["id"], 5)
            ready = httpx.get(f"{live_cluster.url}/readyz", timeout=30)
            metrics = httpx.get(f"{live_cluster.url}/metrics", timeout=30).text
        finally:
            for job in jobs:
                api.cancel_job(job["id"])
            for job in jobs:
                flows.wait_status(api, job["id"], timeout=60)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["workers"] == f"ok: {len(workers)}"  # not "...a ping"
    assert f'modelkiln_workers{{queue="cpu"}} {float(len(workers))}' in metrics


def test_sigterm_hands_the_running_job_to_another_worker_without_gap(
    live_cluster: Cluster,
) -> None:
    while len(live_cluster.live_workers()) < 2:
        live_cluster.start_worker()
    with live_cluster.client() as api:
        job = flows.gan_job(api, epochs=20, batch_size=32)  # 880 steps
        running = flows.wait_step(api, job["id"], 30)
        node = running["worker"].split("@")[0]  # e.g. cpu.4242: queues, then the pid
        holder = next(w for w in live_cluster.live_workers() if node.endswith(f".{w.pid}"))

        holder.signal(signal.SIGTERM)
        assert holder.wait(timeout=60) == 0, holder.log()[-3000:]
        assert "re-queued" in holder.log()

        done = flows.wait_status(api, job["id"], timeout=540)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2
        assert done["worker"] != running["worker"]
        steps = flows.loss_steps(api, job["id"], "d_loss")
        assert steps == list(range(1, done["total_steps"] + 1))  # no gap, no duplicate
