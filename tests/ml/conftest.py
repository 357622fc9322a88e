"""Shared fixtures for the model tests: tiny datasets, fast specs, uploads, trainers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ml.datasets import DataKind, Dataset, split
from ml.loop import Trainer
from ml.specs import CNNSpec, NeuronSpec
from ml.training import build_trainer, parse_spec

CPU = torch.device("cpu")


@pytest.fixture
def cpu() -> torch.device:
    return CPU


@pytest.fixture
def tiny_binary() -> Dataset:
    """40 rows, 3 features, 2 separable-ish classes (seeded)."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 3)) + 2.0 * y[:, None]
    return split("tiny_binary", DataKind.tabular, x, y)


@pytest.fixture
def tiny_images() -> Dataset:
    """30 one-channel 6x6 images in [0, 1], 3 classes (seeded)."""
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 10)
    x = rng.uniform(size=(30, 1, 6, 6)).astype(np.float32)
    return split("tiny_images", DataKind.image, x, y)


def neuron_spec(**hyperparams: Any) -> NeuronSpec:
    """The neuron on breast_cancer; ``hyperparams`` override the small defaults here."""
    hp = {"epochs": 2, "batch_size": 64, "lr": 0.5, **hyperparams}
    spec = parse_spec({"model": "neuron", "dataset": {"name": "breast_cancer"}, "hyperparams": hp})
    assert isinstance(spec, NeuronSpec)
    return spec


def cnn_spec(**hyperparams: Any) -> CNNSpec:
    """A narrow CNN on digits (6 steps an epoch): fast enough for loop tests."""
    hp = {"epochs": 2, "batch_size": 256, "lr": 0.01, "channels": 4, **hyperparams}
    spec = parse_spec({"model": "cnn", "dataset": {"name": "digits"}, "hyperparams": hp})
    assert isinstance(spec, CNNSpec)
    return spec


@pytest.fixture
def make_trainer() -> Callable[[Any, Dataset], Trainer]:
    """Build a trainer the way ``ml.train`` does (seeded init) for a spec and a dataset."""

    def make(spec: Any, dataset: Dataset) -> Trainer:
        torch.manual_seed(spec.seed)
        return build_trainer(spec, dataset, CPU)

    return make


def write_upload(
    uploads_dir: Path, upload_id: str, x: np.ndarray, y: np.ndarray | None, kind: str
) -> Path:
    """Store a dataset the way ml.uploads does: ``<id>.npz`` with x, optional y and meta."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"x": np.asarray(x, dtype=np.float32)}
    if y is not None:
        arrays["y"] = np.asarray(y, dtype=np.int64)
    arrays["meta"] = np.array(json.dumps({"name": upload_id, "kind": kind}))
    path = uploads_dir / f"{upload_id}.npz"
    np.savez(path, **arrays)
    return path
