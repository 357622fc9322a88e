"""Samples, progress GIF, predictions and checkpoint downloads from real (tiny) trained models."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.settings import Settings
from app.store import JobStore

SPECS: dict[str, dict[str, object]] = {
    "neuron": {
        "model": "neuron",
        "dataset": {"name": "moons"},
        "hyperparams": {"epochs": 1, "batch_size": 64, "lr": 0.5},
    },
    "cnn": {
        "model": "cnn",
        "dataset": {"name": "digits"},
        "hyperparams": {"epochs": 1, "batch_size": 128, "lr": 0.002, "channels": 4},
    },
    "gan": {
        "model": "gan",
        "dataset": {"name": "digits"},
        "hyperparams": {
            "epochs": 2,
            "batch_size": 128,
            "lr": 0.0002,
            "hidden": 32,
            "latent_dim": 8,
        },
    },
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run directory per model kind, trained once per session (1–2 epochs, tiny nets)."""
    from ml.training import parse_spec, train

    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for kind, body in SPECS.items():
        train(parse_spec(body), run_dir=root / kind)
        runs[kind] = root / kind
    return runs


def job_with_run(
    client: TestClient, settings: Settings, trained: dict[str, Path], kind: str
) -> str:
    job_id = str(client.post("/v1/jobs", json=SPECS[kind]).json()["id"])
    shutil.copytree(trained[kind], settings.runs_dir / job_id)
    return job_id


def test_gan_samples_png_json_npy(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    job_id = job_with_run(client, settings, trained, "gan")
    png = client.get(f"/v1/jobs/{job_id}/samples", params={"n": 16, "seed": 7, "nrow": 4})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 4 * 8
    a = client.get(
        f"/v1/jobs/{job_id}/samples", params={"n": 5, "seed": 7, "format": "json"}
    ).json()
    b = client.get(
        f"/v1/jobs/{job_id}/samples", params={"n": 5, "seed": 7, "format": "json"}
    ).json()
    c = client.get(
        f"/v1/jobs/{job_id}/samples", params={"n": 5, "seed": 8, "format": "json"}
    ).json()
    assert a == b and a["samples"] != c["samples"]
    assert a["shape"] == [5, 1, 8, 8] and a["step"] == 22
    npy = client.get(f"/v1/jobs/{job_id}/samples", params={"n": 5, "seed": 7, "format": "npy"})
    arr = np.load(io.BytesIO(npy.content), allow_pickle=False)
    np.testing.assert_allclose(arr, np.array(a["samples"]), rtol=1e-6)


def test_samples_bounds_and_wrong_model(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    gan = job_with_run(client, settings, trained, "gan")
    r = client.get(f"/v1/jobs/{gan}/samples", params={"n": settings.max_samples + 1})
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    neuron = job_with_run(client, settings, trained, "neuron")
    r = client.get(f"/v1/jobs/{neuron}/samples")
    assert r.status_code == 409 and r.json()["error"] == "wrong_model"
    fresh = str(client.post("/v1/jobs", json=SPECS["gan"]).json()["id"])
    r = client.get(f"/v1/jobs/{fresh}/samples")
    assert r.status_code == 409 and r.json()["error"] == "no_checkpoint"


def test_samples_follow_a_newer_checkpoint(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    job_id = job_with_run(client, settings, trained, "gan")
    first = client.get(f"/v1/jobs/{job_id}/samples", params={"format": "json", "n": 2}).json()
    config = settings.runs_dir / job_id / "checkpoint" / "config.json"
    data = json.loads(config.read_text())
    data["step"] = 99  # as if training had moved on
    config.write_text(json.dumps(data))
    second = client.get(f"/v1/jobs/{job_id}/samples", params={"format": "json", "n": 2}).json()
    assert (first["step"], second["step"]) == (22, 99)


def test_progress_gif(client: TestClient, settings: Settings, trained: dict[str, Path]) -> None:
    job_id = job_with_run(client, settings, trained, "gan")
    r = client.get(f"/v1/jobs/{job_id}/progress.gif")
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(r.content)).n_frames == 2
    fresh = str(client.post("/v1/jobs", json=SPECS["gan"]).json()["id"])
    assert client.get(f"/v1/jobs/{fresh}/progress.gif").status_code == 409


def test_progress_gif_is_cached_until_a_new_frame_arrives(
    client: TestClient,
    settings: Settings,
    trained: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ml.images

    builds: list[int] = []
    real = ml.images.progress_gif

    def counting(paths: list[Path], *args: object, **kwargs: object) -> bytes:
        builds.append(len(paths))
        return real(paths, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ml.images, "progress_gif", counting)
    job_id = job_with_run(client, settings, trained, "gan")
    url = f"/v1/jobs/{job_id}/progress.gif"
    first, second = client.get(url), client.get(url)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and builds == [2]
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["etag"] == second.headers["etag"]
    assert (settings.runs_dir / job_id / "progress.gif").read_bytes() == first.content
    # A browser revalidating with the ETag gets 304 and no body.
    again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and builds == [2]

    # The next epoch's frame: rebuilt once, with three frames, then cached again.
    progress = settings.runs_dir / job_id / "progress"
    shutil.copyfile(progress / "epoch_0002.png", progress / "epoch_0003.png")
    third, fourth = client.get(url), client.get(url)
    assert builds == [2, 3] and third.content == fourth.content != first.content
    assert Image.open(io.BytesIO(third.content)).n_frames == 3
    assert third.headers["etag"] != first.headers["etag"]
    stale = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert stale.status_code == 200 and stale.content == third.content
    assert not list((settings.runs_dir / job_id).glob(".progress.gif.*"))  # no temp files left


def test_progress_gif_of_a_long_run_shows_at_most_sixty_frames(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    job_id = job_with_run(client, settings, trained, "gan")
    progress = settings.runs_dir / job_id / "progress"
    for epoch in range(3, 201):  # as if the run had gone on to epoch 200
        shutil.copyfile(progress / "epoch_0002.png", progress / f"epoch_{epoch:04d}.png")
    r = client.get(f"/v1/jobs/{job_id}/progress.gif")
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).n_frames == 60


def test_predict_neuron_json(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    job_id = job_with_run(client, settings, trained, "neuron")
    r = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[0.0, 1.0], [1.0, -0.5]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 2 and len(body["class_names"]) == 2
    for p in body["predictions"]:
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert p["label"] == body["class_names"][p["class_index"]]
    bad = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[1.0, 2.0, 3.0]]})
    assert bad.status_code == 422 and "shape" in bad.json()["detail"]
    png = _png(8, 8)
    img = client.post(f"/v1/jobs/{job_id}/predict", files={"file": ("x.png", png, "image/png")})
    assert img.status_code == 422


def _png(w: int, h: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color=128 if mode == "L" else (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_predict_cnn_image_resized(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    job_id = job_with_run(client, settings, trained, "cnn")
    r = client.post(
        f"/v1/jobs/{job_id}/predict", files={"file": ("big.png", _png(40, 30), "image/png")}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1
    assert len(r.json()["predictions"][0]["probabilities"]) == 10
    rows = client.post(
        f"/v1/jobs/{job_id}/predict", json={"inputs": np.zeros((2, 1, 8, 8)).tolist()}
    )
    assert rows.status_code == 200 and len(rows.json()["predictions"]) == 2
    junk = client.post(
        f"/v1/jobs/{job_id}/predict", files={"file": ("x.png", b"not a png", "image/png")}
    )
    assert junk.status_code == 422 and junk.json()["error"] == "invalid"


def test_predict_on_gan_is_409(
    client: TestClient, settings: Settings, trained: dict[str, Path]
) -> None:
    job_id = job_with_run(client, settings, trained, "gan")
    r = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[0.0]]})
    assert r.status_code == 409 and r.json()["error"] == "wrong_model"


def test_checkpoint_download(
    client: TestClient, settings: Settings, trained: dict[str, Path], api_store: JobStore
) -> None:
    from safetensors import safe_open

    job_id = job_with_run(client, settings, trained, "cnn")
    r = client.get(f"/v1/jobs/{job_id}/checkpoint")
    assert r.status_code == 200 and "safetensors" in r.headers["content-disposition"]
    path = settings.home / "w.safetensors"
    path.write_bytes(r.content)
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["modelkiln"])
        assert any(k.startswith("net.") for k in f.keys())  # noqa: SIM118
    config = client.get(f"/v1/jobs/{job_id}/checkpoint", params={"part": "config"}).json()
    assert config == meta and config["model"] == "cnn"
    fresh = str(client.post("/v1/jobs", json=SPECS["cnn"]).json()["id"])
    assert client.get(f"/v1/jobs/{fresh}/checkpoint").status_code == 409
