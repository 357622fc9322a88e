"""Datasets (built-ins and uploads) and the service endpoints (healthz, readyz, metrics)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store import JobStatus, JobStore

from .conftest import FakeCelery, age_worker, beat


def _csv(rows: int = 40) -> bytes:
    lines = ["a,b,label"] + [
        f"{i % 7},{(i * 3) % 5},{'yes' if i % 2 else 'no'}" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_builtins_listed_mnist_unavailable(client: TestClient) -> None:
    data = {d["name"]: d for d in client.get("/v1/datasets").json()["data"]}
    assert {"digits", "breast_cancer", "moons", "blobs", "ring8", "grid25"} <= set(data)
    assert data["digits"]["available"] and data["digits"]["shape"] == [1, 8, 8]
    assert data["digits"]["num_classes"] == 10 and data["digits"]["ref"] == {"name": "digits"}
    assert not data["mnist"]["available"] and "MODELKILN_DATA_DIR" in data["mnist"]["detail"]


def test_upload_csv_then_train_on_it(client: TestClient, settings: Settings) -> None:
    r = client.post(
        "/v1/datasets", files={"file": ("pts.csv", _csv(), "text/csv")}, data={"name": "mine"}
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    assert (ds["name"], ds["source"], ds["kind"], ds["num_classes"]) == (
        "mine",
        "upload",
        "points",
        2,
    )
    assert (settings.uploads_dir / f"{ds['id']}.npz").is_file()
    listed = [d["id"] for d in client.get("/v1/datasets").json()["data"]]
    assert ds["id"] in listed
    job = client.post("/v1/jobs", json={"model": "neuron", "dataset": {"id": ds["id"]}})
    assert job.status_code == 201 and job.json()["dataset"] == f"upload:{ds['id']}"
    cnn = client.post("/v1/jobs", json={"model": "cnn", "dataset": {"id": ds["id"]}})
    assert cnn.status_code == 422


def test_upload_too_large_is_413(client: TestClient, settings: Settings) -> None:
    settings.max_upload_bytes = 1024
    r = client.post("/v1/datasets", files={"file": ("big.csv", _csv(400), "text/csv")})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


@pytest.mark.parametrize(
    "files",
    [
        {"file": ("x.txt", b"hello", "text/plain")},
        {"file": ("x.csv", b"a,b\n1,2\n", "text/csv")},
        {"file": ("x.npz", b"PK\x03\x04garbage", "application/octet-stream")},
        {"file": ("x.zip", b"not a zip", "application/zip")},
        {"other": ("x.csv", b"a,label\n1,0\n", "text/csv")},
    ],
)
def test_bad_uploads_are_422(client: TestClient, files: dict[str, tuple[str, bytes, str]]) -> None:
    r = client.post("/v1/datasets", files=files)
    assert r.status_code == 422, r.text
    assert set(r.json()) >= {"error", "detail"}


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_ok_and_each_failure(client: TestClient, fake_celery: FakeCelery) -> None:
    # No heartbeat in the store: readiness falls back to a Celery ping, which one answers.
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["workers"].startswith("ok: 1 answered a ping")
    fake_celery.control.ping.return_value = []
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    assert "workers" in r.json()["detail"] and r.json()["checks"]["broker"] == "ok"
    fake_celery.broker_up = False
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["broker"].startswith("unreachable")


def test_readyz_counts_a_busy_worker_by_its_heartbeat(
    client: TestClient, fake_celery: FakeCelery, api_store: JobStore
) -> None:
    # The only worker is training: solo pool, so no ping answer; its heartbeat is fresh.
    fake_celery.control.ping.return_value = []
    beat(api_store, "cpu.4242@gpu-host", job_id="k3v9x0q2m1ab")
    r = client.get("/readyz")
    assert r.status_code == 200, r.json()
    assert r.json()["checks"] == {"store": "ok", "broker": "ok", "workers": "ok: 1"}
    fake_celery.control.ping.assert_not_called()  # a fresh heartbeat needs no ping


def test_readyz_is_503_when_the_only_heartbeat_is_stale(
    client: TestClient, fake_celery: FakeCelery, api_store: JobStore, settings: Settings
) -> None:
    fake_celery.control.ping.return_value = []
    beat(api_store, "cpu.4242@gpu-host")
    age_worker(api_store, "cpu.4242@gpu-host", settings.worker_stale_after_s + 1)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    assert r.json()["checks"]["workers"] == (
        "no worker heartbeat in the last 15 s, and none answered a ping"
    )
    fake_celery.control.ping.assert_called_once()


def test_metrics(client: TestClient, api_store: JobStore) -> None:
    job = client.post("/v1/jobs", json={"model": "neuron", "dataset": {"name": "moons"}}).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    client.get("/v1/jobs/nope")
    text = client.get("/metrics").text
    assert 'modelkiln_jobs{status="cancelled"} 1.0' in text
    assert 'modelkiln_queue_depth{queue="cpu"} 3.0' in text
    assert (
        'modelkiln_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{job_id}",'
        'status="404"} 1.0'
    ) in text
    assert api_store.get_job(job["id"]).status is JobStatus.cancelled  # type: ignore[union-attr]


def test_metrics_count_live_workers_by_queue(
    client: TestClient, api_store: JobStore, settings: Settings
) -> None:
    text = client.get("/metrics").text
    assert 'modelkiln_workers{queue="cpu"} 0.0' in text
    assert 'modelkiln_workers{queue="gpu"} 0.0' in text
    beat(api_store, "cpu.1@a", job_id="busy")  # busy workers count too
    beat(api_store, "gpu.2@b", queues=("cpu", "gpu"))
    beat(api_store, "cpu.3@c")
    age_worker(api_store, "cpu.3@c", settings.worker_stale_after_s + 1)  # gone
    text = client.get("/metrics").text
    assert 'modelkiln_workers{queue="cpu"} 2.0' in text
    assert 'modelkiln_workers{queue="gpu"} 1.0' in text
