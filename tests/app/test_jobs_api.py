"""The jobs endpoints: submit, list, inspect, cancel, delete, losses."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from app.deps import get_store
from app.main import create_app
from app.settings import Settings
from app.store import EventIn, JobStatus, JobStore
from ml.specs import EXAMPLES

from .conftest import FakeCelery


def submit(client: TestClient, **body: object) -> dict[str, object]:
    r = client.post("/v1/jobs", json={"model": "neuron", "dataset": {"name": "moons"}, **body})
    assert r.status_code == 201, r.text
    job: dict[str, object] = r.json()
    return job


def test_create_job_commits_then_enqueues(client: TestClient, fake_celery: FakeCelery) -> None:
    r = client.post("/v1/jobs", json=EXAMPLES["neuron"])
    assert r.status_code == 201
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["model"] == "neuron" and job["queue"] == "cpu"
    assert job["spec"]["hyperparams"] == {"epochs": 100, "batch_size": 64, "lr": 0.5}
    fake_celery.send_task.assert_called_once_with(
        "jobs.run", args=[job["id"]], queue="cpu", retry=True, retry_policy=mock_any()
    )
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def mock_any() -> object:
    from unittest import mock

    return mock.ANY


@pytest.mark.parametrize(
    ("device", "auto_queue", "queue"),
    [("cuda", "cpu", "gpu"), ("cpu", "gpu", "cpu"), ("auto", "cpu", "cpu"), ("auto", "gpu", "gpu")],
)
def test_queue_follows_device(
    client: TestClient,
    settings: Settings,
    fake_celery: FakeCelery,
    device: str,
    auto_queue: str,
    queue: str,
) -> None:
    settings.auto_queue = auto_queue  # type: ignore[assignment]
    job = submit(client, device=device)
    assert job["queue"] == queue
    assert fake_celery.send_task.call_args.kwargs["queue"] == queue


@pytest.mark.parametrize("kind", ["neuron", "cnn", "gan"])
def test_every_swagger_example_is_accepted(client: TestClient, kind: str) -> None:
    assert client.post("/v1/jobs", json=EXAMPLES[kind]).status_code == 201


def test_openapi_shows_an_example_per_model(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"neuron", "cnn", "gan"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "neuron", "dataset": {"name": "digits"}}, "tabular"),  # images
        ({"model": "neuron", "dataset": {"name": "blobs"}}, "2 classes"),  # 3 classes
        ({"model": "cnn", "dataset": {"name": "moons"}}, "images"),
        ({"model": "gan", "dataset": {"name": "nope"}}, "unknown dataset"),
        ({"model": "gan", "dataset": {"id": "missing"}}, "no uploaded dataset"),
        ({"model": "neuron", "dataset": {"name": "mnist"}}, "MODELKILN_DATA_DIR"),
    ],
)
def test_unsuitable_dataset_is_422_and_nothing_stored(
    client: TestClient, fake_celery: FakeCelery, body: dict[str, object], needle: str
) -> None:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_dataset"
    assert needle in r.json()["detail"]
    fake_celery.send_task.assert_not_called()
    assert client.get("/v1/jobs").json()["count"] == 0


def test_broker_down_is_503_and_no_job(client: TestClient, fake_celery: FakeCelery) -> None:
    fake_celery.send_task.side_effect = ConnectionRefusedError("redis down")
    r = client.post("/v1/jobs", json=EXAMPLES["gan"])
    assert r.status_code == 503
    assert r.json()["error"] == "broker_unavailable"
    assert client.get("/v1/jobs").json() == {"data": [], "count": 0, "next_cursor": None}


def test_store_down_is_503(client: TestClient, app: object) -> None:
    dead = JobStore(create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"))
    client.app.dependency_overrides[get_store] = lambda: dead  # type: ignore[attr-defined]
    r = client.get("/v1/jobs")
    assert r.status_code == 503
    assert r.json()["error"] == "store_unavailable"


def test_list_filters_and_paginates(client: TestClient) -> None:
    ids = [submit(client)["id"] for _ in range(3)]
    cnn = client.post("/v1/jobs", json=EXAMPLES["cnn"]).json()["id"]
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == [cnn, ids[2]]
    assert page["count"] == 2 and page["next_cursor"]
    rest = client.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["data"]] == [ids[1], ids[0]]
    assert rest["next_cursor"] is None
    assert [j["id"] for j in client.get("/v1/jobs?model=cnn").json()["data"]] == [cnn]
    assert client.get("/v1/jobs?status=running").json()["count"] == 0
    assert client.get("/v1/jobs?status=bogus").status_code == 422


def test_get_unknown_job_is_404(client: TestClient) -> None:
    r = client.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404
    assert r.json() == {"error": "job_not_found", "detail": "no job with id 'doesnotexist'"}


def test_cancel_queued_job(client: TestClient, api_store: JobStore) -> None:
    job = submit(client)
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "cancelled"
    assert api_store.claim(str(job["id"]), "w", "cpu") is None  # it never starts


def test_cancel_running_job_sets_flag(client: TestClient, api_store: JobStore) -> None:
    job_id = str(submit(client)["id"])
    api_store.claim(job_id, "w", "cpu")
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    assert api_store.cancel_requested(job_id)


def test_delete_only_finished_jobs_and_artifacts(
    client: TestClient, api_store: JobStore, settings: Settings
) -> None:
    job_id = str(submit(client)["id"])
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 409 and r.json()["error"] == "wrong_state"
    api_store.claim(job_id, "w", "cpu")
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 409
    run_dir = settings.runs_dir / job_id / "checkpoint"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    api_store.finish(job_id, JobStatus.succeeded)
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not (settings.runs_dir / job_id).exists()
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404


def test_progress_and_metrics_in_job(client: TestClient, api_store: JobStore) -> None:
    job_id = str(submit(client)["id"])
    api_store.claim(job_id, "w1", "cpu")
    api_store.append_events(
        job_id,
        [
            EventIn("metrics", 5, 1, 20, {"loss": 0.3, "accuracy": 0.9}),
            EventIn("metrics", 10, 2, 20, {"loss": 0.5, "accuracy": 0.8}),
        ],
    )
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert (job["step"], job["total_steps"], job["epoch"], job["progress"]) == (10, 20, 2, 0.5)
    assert job["metrics"] == {"loss": 0.5, "accuracy": 0.8}
    assert job["best_metrics"] == {"loss": 0.3, "accuracy": 0.9}
    assert (job["worker"], job["device"], job["status"]) == ("w1", "cpu", "running")
    assert job["started_at"] is not None


def _with_history(client: TestClient, store: JobStore, steps: int) -> str:
    job_id = str(submit(client)["id"])
    store.claim(job_id, "w", "cpu")  # seq 1: a status event, not a loss
    store.append_events(
        job_id, [EventIn("metrics", s, 1, steps, {"loss": 1.0 / s}) for s in range(1, steps + 1)]
    )
    store.append_events(job_id, [EventIn("metrics", steps, 1, steps, {"val_loss": 0.5})])
    return job_id


def test_losses_pages(client: TestClient, api_store: JobStore) -> None:
    job_id = _with_history(client, api_store, 10)
    first = client.get(f"/v1/jobs/{job_id}/losses", params={"limit": 4}).json()
    assert [p["step"] for p in first["data"]] == [1, 2, 3, 4]
    assert first["data"][0] == {"seq": 2, "step": 1, "epoch": 1, "metrics": {"loss": 1.0}}
    seen = [p["seq"] for p in first["data"]]
    after = first["next_after"]
    while after is not None:
        page = client.get(f"/v1/jobs/{job_id}/losses", params={"after": after, "limit": 4}).json()
        seen += [p["seq"] for p in page["data"]]
        after = page["next_after"]
    assert seen == list(range(2, 13))


def test_losses_csv_and_every(client: TestClient, api_store: JobStore) -> None:
    job_id = _with_history(client, api_store, 10)
    r = client.get(f"/v1/jobs/{job_id}/losses", params={"format": "csv", "every": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "seq,step,epoch,loss,val_loss"
    assert lines[1:] == ["6,5,1,0.2,", "11,10,1,0.1,", "12,10,1,,0.5"]
    thinned = client.get(f"/v1/jobs/{job_id}/losses", params={"every": 2}).json()
    assert [p["step"] for p in thinned["data"]] == [2, 4, 6, 8, 10, 10]


def test_a_real_broker_that_is_down_is_503_and_no_job(tmp_path: Path) -> None:
    """No stand-in: the app's own Celery client against a Redis port where nothing listens."""
    settings = Settings(home=tmp_path / "home", broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as real:
        r = real.post("/v1/jobs", json=EXAMPLES["neuron"])
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "broker_unavailable"
        assert real.get("/v1/jobs").json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"model": "foo", "dataset": {"name": "digits"}},
            "'model' must be one of neuron, cnn, gan",
        ),
        ({"dataset": {"name": "digits"}}, "'model' is required"),
    ],
)
def test_an_unknown_or_missing_model_is_named_plainly(
    client: TestClient, body: dict[str, object], detail: str
) -> None:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422
    assert detail in r.json()["detail"]
    assert "ModelKind" not in r.text
