"""Checkpoints: safetensors + JSON (no pickle), rebuilt from the directory alone; normalisation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from ml import checkpoint as ckpt_io
from ml.cnn import CNNTrainer
from ml.datasets import Dataset, load_dataset
from ml.errors import CheckpointError, DatasetError
from ml.inference import WrongModelError, load_model, predict, sample
from ml.loop import run_loop
from ml.neuron import NeuronTrainer
from ml.normalize import Normalization
from ml.specs import AnySpec
from ml.training import train
from tests.ml.conftest import CPU, cnn_spec, neuron_spec

PICKLE_PROTO = b"\x80"  # every pickle protocol >= 2 starts with PROTO (0x80)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container


def trained(spec: AnySpec, make_trainer: Callable[..., Any], run_dir: Path) -> tuple[Any, Dataset]:
    """Train ``spec`` for its epochs and keep the in-memory trainer."""
    dataset = load_dataset(spec.dataset)
    trainer = make_trainer(spec, dataset)
    run_loop(
        trainer,
        seed=spec.seed,
        epochs=spec.hyperparams.epochs,
        on_event=lambda e: None,
        should_stop=lambda: False,
        run_dir=run_dir,
        device=CPU,
    )
    return trainer, dataset


def test_checkpoint_files_are_safetensors_and_json_with_no_pickle(tmp_path: Path) -> None:
    train(cnn_spec(epochs=1), run_dir=tmp_path)
    directory = tmp_path / "checkpoint"
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "state.safetensors",
        "weights.safetensors",
    ]
    for name in ("weights.safetensors", "state.safetensors"):
        data = (directory / name).read_bytes()
        assert not data.startswith(PICKLE_PROTO) and not data.startswith(ZIP_MAGIC)
        header_len = int.from_bytes(data[:8], "little")  # safetensors: u64 length, JSON header
        json.loads(data[8 : 8 + header_len])
        with safe_open(directory / name, framework="pt") as f:
            assert len(list(f.keys())) > 0
    with safe_open(directory / "weights.safetensors", framework="pt") as f:
        assert "net.conv1.weight" in f.keys()  # noqa: SIM118 (not a dict)
        embedded = json.loads(f.metadata()["modelkiln"])  # the config rides along
    config = json.loads((directory / "config.json").read_text())
    assert embedded == config
    assert config["model"] == "cnn" and config["step"] == config["total_steps"] == 6
    assert config["spec"]["hyperparams"]["channels"] == 4
    assert config["dataset"]["name"] == "digits"
    assert config["normalization"]["per"] == "channel"
    assert config["input_shape"] == [1, 8, 8] and config["num_classes"] == 10
    # Leftovers of the atomic write (temporary or old directories) are gone.
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_cnn_rebuilt_from_the_directory_predicts_like_the_trained_model(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    trainer, dataset = trained(cnn_spec(epochs=1), make_trainer, tmp_path)
    assert isinstance(trainer, CNNTrainer)
    trainer.net.eval()
    with torch.no_grad():
        expected = torch.softmax(trainer.net(trainer.x_val), dim=1).numpy()

    model = load_model(tmp_path / "checkpoint")  # config + weights only, no spec, no dataset
    probs = model.predict(dataset.x_val)  # raw pixels in [0, 1]

    assert (model.kind, model.step) == ("cnn", 6)
    assert probs.shape == (len(dataset.x_val), 10) and probs.dtype == np.float32
    np.testing.assert_array_equal(probs, expected)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # Smaller batches may sum in another order (last-bit differences), hence allclose.
    same = {"rtol": 1e-5, "atol": 1e-7}
    np.testing.assert_allclose(
        predict(tmp_path / "checkpoint", dataset.x_val[:3]), probs[:3], **same
    )
    # One example, with or without the channel axis.
    np.testing.assert_allclose(model.predict(dataset.x_val[0]), probs[:1], **same)
    np.testing.assert_allclose(model.predict(dataset.x_val[:2, 0]), probs[:2], **same)


def test_neuron_rebuilt_from_the_directory_predicts_like_the_trained_model(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    trainer, dataset = trained(neuron_spec(epochs=3), make_trainer, tmp_path)
    assert isinstance(trainer, NeuronTrainer)
    p1 = torch.sigmoid(trainer.x_val @ trainer.w + trainer.b).numpy()

    model = load_model(tmp_path / "checkpoint")
    probs = model.predict(dataset.x_val)  # raw features, in their own units

    assert model.kind == "neuron" and model.class_names == ["malignant", "benign"]
    assert probs.shape == (len(dataset.x_val), 2)
    np.testing.assert_array_equal(probs[:, 1], p1)
    np.testing.assert_array_equal(probs[:, 0], 1.0 - p1)
    np.testing.assert_allclose(model.predict(dataset.x_val[5]), probs[5:6], rtol=1e-5, atol=1e-7)


def test_predict_rejects_inputs_of_the_wrong_shape_or_values(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    trained(neuron_spec(epochs=1), make_trainer, tmp_path)
    model = load_model(tmp_path / "checkpoint")
    with pytest.raises(DatasetError, match=r"shape \(N, 30\); got \(2, 4\)"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(DatasetError, match="shape"):
        model.predict(np.zeros((2, 30, 1)))
    with pytest.raises(DatasetError, match="NaN"):
        model.predict(np.full((1, 30), np.nan))
    with pytest.raises(DatasetError, match="numbers"):
        model.predict(np.array([["a"] * 30]))


def test_sample_on_a_classifier_and_predict_on_a_gan_are_refused(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    trained(neuron_spec(epochs=1), make_trainer, tmp_path / "neuron")
    with pytest.raises(WrongModelError, match="sample needs a gan; this checkpoint is a neuron"):
        sample(tmp_path / "neuron" / "checkpoint", n=4, seed=0)

    # A GAN checkpoint (its tensors do not matter to predict, which must refuse first).
    ckpt_io.save(
        tmp_path / "gan",
        ckpt_io.Checkpoint({"model": "gan", "step": 3}, {"g.w": torch.zeros(2)}, {}),
    )
    gan = load_model(tmp_path / "gan")
    assert (gan.kind, gan.step) == ("gan", 3)
    with pytest.raises(WrongModelError, match="predict needs a classifier"):
        gan.predict(np.zeros((1, 2)))
    assert issubclass(WrongModelError, ValueError)


def test_missing_unknown_or_mismatched_checkpoints_are_checkpoint_errors(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "nothing")

    ckpt_io.save(tmp_path / "odd", ckpt_io.Checkpoint({"model": "rnn"}, {"x": torch.zeros(1)}, {}))
    with pytest.raises(CheckpointError, match="unknown model kind 'rnn'"):
        load_model(tmp_path / "odd")

    trained(cnn_spec(epochs=1), make_trainer, tmp_path / "cnn")
    saved = ckpt_io.load(tmp_path / "cnn" / "checkpoint")
    saved.config["channels"] = 8  # a config that no longer fits the weights
    ckpt_io.save(tmp_path / "bad", saved)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(tmp_path / "bad")

    del saved.config["input_shape"]
    ckpt_io.save(tmp_path / "incomplete", saved)
    with pytest.raises(CheckpointError, match="incomplete.*input_shape"):
        load_model(tmp_path / "incomplete")

    (tmp_path / "bad" / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_model(tmp_path / "bad")


def test_optimizer_state_round_trips_through_safetensors(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    trainer, dataset = trained(cnn_spec(epochs=1), make_trainer, tmp_path)
    saved = ckpt_io.load(tmp_path / "checkpoint")
    fresh = make_trainer(cnn_spec(epochs=1), dataset)
    fresh.load(saved)
    a, b = trainer.opt.state_dict(), fresh.opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["state"][pid][key]), (pid, key)
    for key, value in trainer.net.state_dict().items():
        assert torch.equal(value, fresh.net.state_dict()[key]), key


# --- normalisation (recorded in the checkpoint config) ---------------------------------------


def test_standard_normalisation_per_feature_is_zero_mean_unit_std() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 3)) * [1.0, 10.0, 1000.0] + [5.0, -3.0, 0.0]).astype(np.float32)
    x[:, 2] = 7.0  # a constant feature: scale 1, not a division by zero
    norm = Normalization.fit(x)
    z = norm.apply(x)
    assert z.dtype == np.float32 and norm.per == "feature" and norm.center.shape == (3,)
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1.0, rtol=1e-5)
    assert (z[:, 2] == 0.0).all() and norm.scale[2] == 1.0
    np.testing.assert_allclose(norm.invert(z), x, rtol=1e-5, atol=1e-4)


def test_image_normalisations_per_channel_all_and_minmax() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(10, 3, 4, 4)).astype(np.float32)
    x[:, 1] *= 0.5
    per_channel = Normalization.fit(x)
    assert per_channel.per == "channel" and per_channel.center.shape == (3, 1, 1)
    np.testing.assert_allclose(per_channel.apply(x).mean(axis=(0, 2, 3)), 0.0, atol=1e-5)

    single = Normalization.fit(x, per="all")
    assert single.center.shape == () and single.center == pytest.approx(x.mean(), rel=1e-6)

    minmax = Normalization.fit(x, method="minmax", per="all")  # for a tanh generator
    z = minmax.apply(x)
    assert z.min() == pytest.approx(-1.0, abs=1e-6) and z.max() == pytest.approx(1.0, abs=1e-6)
    # Exact for pixels: min 0, max 1 -> center ½, scale ½, so -1 -> 0 and 1 -> 1.
    pixels = Normalization.fit(np.array([[[[0.0, 1.0]]]], dtype=np.float32), "minmax", "all")
    t = torch.tensor([-1.0, 0.0, 1.0])
    assert pixels.invert(t).tolist() == [0.0, 0.5, 1.0]
    assert pixels.apply(torch.tensor([0.0, 0.25, 1.0])).tolist() == [-1.0, -0.5, 1.0]


def test_normalisation_json_round_trip_is_exact() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 2, 3, 3)).astype(np.float32)
    for norm in (Normalization.fit(x), Normalization.fit(x, "minmax", "all")):
        back = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
        assert back.method == norm.method and back.per == norm.per
        np.testing.assert_array_equal(back.center, norm.center)
        np.testing.assert_array_equal(back.scale, norm.scale)
        np.testing.assert_array_equal(back.apply(x), norm.apply(x))
