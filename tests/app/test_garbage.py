"""Nothing a client sends produces a 500; every error has the {"error", "detail"} shape."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

J = "/v1/jobs/{id}"
CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "POST",
        "/v1/jobs",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
    ),
    ("POST", "/v1/jobs", {"json": []}),
    ("POST", "/v1/jobs", {"json": {"model": "rnn", "dataset": {"name": "digits"}}}),
    (
        "POST",
        "/v1/jobs",
        {
            "json": {
                "model": "gan",
                "dataset": {"name": "digits"},
                "hyperparams": {"epochs": "many"},
            }
        },
    ),
    ("POST", "/v1/jobs", {"json": {"model": "gan", "dataset": {"name": "x", "id": "y"}}}),
    ("POST", "/v1/jobs", {"json": {"model": "cnn", "dataset": {"name": "digits"}, "seed": -1}}),
    ("POST", "/v1/jobs", {"json": {"model": "cnn", "dataset": {"name": "digits"}, "extra": 1}}),
    (
        "POST",
        "/v1/jobs",
        {
            "json": {
                "model": "gan",
                "dataset": {"name": "digits"},
                "hyperparams": {"batch_size": 10**12},
            }
        },
    ),
    ("POST", "/v1/jobs", {"json": {"model": "neuron", "dataset": {"id": "../../etc"}}}),
    ("GET", "/v1/jobs", {"params": {"cursor": "%%%"}}),
    ("GET", "/v1/jobs", {"params": {"cursor": "eyJhIjogMX0"}}),  # valid base64, wrong content
    ("GET", "/v1/jobs", {"params": {"limit": -1}}),
    ("GET", "/v1/jobs", {"params": {"limit": "ten"}}),
    ("GET", "/v1/jobs", {"params": {"status": "done"}}),
    ("GET", "/v1/jobs/" + "x" * 500, {}),
    ("GET", "/v1/jobs/bad%20id", {}),
    ("DELETE", "/v1/jobs", {}),
    ("GET", J + "/losses", {"params": {"after": -5}}),
    ("GET", J + "/losses", {"params": {"after": "abc"}}),
    ("GET", J + "/losses", {"params": {"every": 0}}),
    ("GET", J + "/losses", {"params": {"format": "xml"}}),
    ("GET", J + "/losses", {"params": {"limit": 10**9}}),
    ("GET", J + "/events", {"headers": {"Last-Event-ID": "abc"}}),
    ("GET", J + "/events", {"headers": {"Last-Event-ID": "-1"}}),
    ("GET", J + "/events", {"headers": {"Last-Event-ID": "9" * 40}}),
    ("GET", J + "/samples", {"params": {"n": 10**9}}),
    ("GET", J + "/samples", {"params": {"n": 0}}),
    ("GET", J + "/samples", {"params": {"seed": -1}}),
    ("GET", J + "/samples", {"params": {"format": "gif"}}),
    ("GET", J + "/samples", {"params": {"nrow": 0}}),
    ("GET", J + "/samples", {}),  # a neuron job: wrong model
    ("GET", J + "/progress.gif", {}),
    ("GET", J + "/checkpoint", {"params": {"part": "optimizer"}}),
    ("GET", J + "/checkpoint", {}),
    (
        "POST",
        J + "/predict",
        {"content": b"[[1,2]", "headers": {"content-type": "application/json"}},
    ),
    ("POST", J + "/predict", {"json": {"inputs": "abc"}}),
    ("POST", J + "/predict", {"json": {"inputs": []}}),
    ("POST", J + "/predict", {"json": {"nope": 1}}),
    ("POST", J + "/predict", {"files": {"file": ("a.png", b"garbage", "image/png")}}),
    ("POST", J + "/predict", {"files": {"other": ("a.png", b"garbage", "image/png")}}),
    ("POST", "/v1/datasets", {"json": {"file": "x"}}),
    (
        "POST",
        "/v1/datasets",
        {
            "content": b"--x\r\nbroken",
            "headers": {"content-type": "multipart/form-data; boundary=x"},
        },
    ),
    ("POST", "/v1/datasets", {"files": {"file": ("", b"a,b\n", "text/csv")}}),
    ("GET", "/v1/unknown", {}),
    ("PUT", "/healthz", {}),
]


@pytest.fixture
def job_id(client: TestClient) -> str:
    r = client.post("/v1/jobs", json={"model": "neuron", "dataset": {"name": "moons"}})
    return str(r.json()["id"])


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES)
def test_garbage_never_500(
    client: TestClient, job_id: str, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    r = client.request(method, path.format(id=job_id), **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["detail"]


def test_a_json_syntax_error_says_what_and_where(client: TestClient) -> None:
    r = client.post(
        "/v1/jobs", content=b'{"model": "gan",', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    body = r.json()
    assert body["detail"] == (
        "body: the body is not valid JSON: Expecting property name enclosed in double quotes"
        " at character 16"
    )
    assert body["errors"][0]["loc"] == ["body"] and body["errors"][0]["type"] == "json_invalid"


def test_predict_on_a_job_without_checkpoint_is_409(client: TestClient, job_id: str) -> None:
    r = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[1.0, 2.0]]})
    assert r.status_code == 409 and r.json()["error"] == "no_checkpoint"
