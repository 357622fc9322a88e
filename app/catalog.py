"""What the API knows about datasets without torch: descriptions, availability, suitability.

Built-ins are described once (loading them is numpy/scikit-learn work) and cached per
process; ``mnist``/``fashion_mnist`` count as available only when their IDX files are in
``MODELKILN_DATA_DIR``. Uploads are described from their row in the ``datasets`` table.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from app.errors import InvalidDataset
from app.store import JobStore
from ml.datasets import BUILTINS, load_dataset
from ml.errors import DatasetError
from ml.specs import AnySpec, DatasetRef, GANHyperparams, ModelKind

IDX_DATASETS = ("mnist", "fashion_mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def idx_missing(name: str, data_dir: Path | None) -> str | None:
    """Why the IDX dataset ``name`` cannot load here, or None if its files are present."""
    if data_dir is None:
        return f"{name} needs MODELKILN_DATA_DIR with {name}/ IDX files; none is set"
    folder = Path(data_dir) / name
    missing = [f for f in IDX_FILES if not (folder / f).is_file()]
    if missing:
        return f"{name} files missing in {folder}: {', '.join(missing)}"
    return None


class Catalog:
    """Descriptions of built-in datasets, computed on first use and kept."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def builtin(self, name: str) -> dict[str, Any]:
        """``Dataset.describe()`` of a built-in; raises DatasetError if unknown or unavailable."""
        if name not in BUILTINS:
            known = ", ".join(BUILTINS)
            raise DatasetError(f"unknown dataset {name!r}; built-in datasets are: {known}")
        if name in IDX_DATASETS and (why := idx_missing(name, self.data_dir)):
            raise DatasetError(why)
        with self._lock:
            if name not in self._cache:
                desc = load_dataset(DatasetRef(name=name), data_dir=self.data_dir).describe()
                self._cache[name] = desc
            return self._cache[name]

    def describe(self, ref: DatasetRef, store: JobStore) -> dict[str, Any]:
        """The description of the dataset ``ref`` names (422 if there is no such dataset)."""
        try:
            if ref.name is not None:
                return self.builtin(ref.name)
        except DatasetError as exc:
            raise InvalidDataset(str(exc)) from exc
        assert ref.id is not None
        record = store.get_dataset(ref.id)
        if record is None:
            raise InvalidDataset(f"no uploaded dataset with id {ref.id!r}")
        return record.info


def check_suits(spec: AnySpec, info: dict[str, Any]) -> None:
    """Raise :class:`InvalidDataset` if the job ``spec`` cannot train on the described data.

    The same rules the trainers apply at start, checked before the job is stored.
    """
    model = spec.model
    name, kind = info.get("name"), info.get("kind")
    classes = int(info.get("num_classes") or 0)
    if model is ModelKind.neuron:
        if kind not in ("tabular", "points"):
            raise InvalidDataset(
                f"the neuron needs tabular or 2-D points data, but {name!r} is {kind} data; "
                "use the cnn for images"
            )
        if classes != 2:
            raise InvalidDataset(
                f"the neuron is a binary classifier and needs exactly 2 classes, but {name!r} "
                f"has {classes}; use the cnn or pick a binary dataset (breast_cancer, moons)"
            )
    elif model is ModelKind.cnn:
        if kind != "image" or len(info.get("shape") or ()) != 3:
            raise InvalidDataset(f"the cnn needs images (N, C, H, W), but {name!r} is {kind} data")
        if classes < 2:
            raise InvalidDataset(f"the cnn needs at least 2 classes; {name!r} has {classes}")
    else:
        if kind not in ("image", "points", "tabular"):
            raise InvalidDataset(f"a GAN cannot train on {kind} data")
        hp = spec.hyperparams
        assert isinstance(hp, GANHyperparams)
        rows = int(info.get("train_size") or 0)
        if rows < hp.batch_size * hp.d_steps:
            raise InvalidDataset(
                f"dataset {name!r} has {rows} training rows, fewer than one step needs "
                f"(batch_size·d_steps = {hp.batch_size * hp.d_steps})"
            )
