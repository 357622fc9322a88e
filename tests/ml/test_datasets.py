"""Built-in and uploaded datasets: sizes, shapes, classes, and a fixed stratified split."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ml import datasets
from ml.datasets import BUILTINS, DataKind, load_dataset, split
from ml.errors import DatasetError
from ml.specs import DatasetRef
from tests.ml.conftest import write_upload

# name: (kind, sample shape, classes, train size, val size) — val is round(20 %) per class.
EXPECTED = {
    "digits": (DataKind.image, (1, 8, 8), 10, 1438, 359),
    "breast_cancer": (DataKind.tabular, (30,), 2, 456, 113),
    "moons": (DataKind.points, (2,), 2, 1600, 400),
    "blobs": (DataKind.points, (2,), 3, 1601, 399),
    "ring8": (DataKind.points, (2,), 8, 8000, 2000),
    "grid25": (DataKind.points, (2,), 25, 19999, 5001),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_sizes_shapes_and_classes(name: str) -> None:
    kind, shape, classes, n_train, n_val = EXPECTED[name]
    d = load_dataset(DatasetRef(name=name))
    assert (d.name, d.kind, d.sample_shape, d.num_classes) == (name, kind, shape, classes)
    assert (len(d.x_train), len(d.x_val)) == (n_train, n_val)
    assert d.y_train is not None and d.y_val is not None
    assert len(d.y_train) == n_train and len(d.y_val) == n_val
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert set(np.unique(d.y_train)) == set(range(classes)) == set(np.unique(d.y_val))
    assert len(d.class_names) == classes
    assert d.describe()["train_size"] == n_train and d.describe()["shape"] == list(shape)


def test_builtin_contents() -> None:
    digits = load_dataset(DatasetRef(name="digits"))
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0  # pixels in [0, 1]
    cancer = load_dataset(DatasetRef(name="breast_cancer"))
    assert cancer.class_names == ["malignant", "benign"]
    ring = load_dataset(DatasetRef(name="ring8"))
    assert ring.modes is not None and ring.modes.shape == (8, 2) and ring.mode_std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring.modes, axis=1), 2.0)
    grid = load_dataset(DatasetRef(name="grid25"))
    assert grid.modes is not None and grid.modes.shape == (25, 2)
    # Every point lies near its own mode (labels are the mode index).
    assert grid.y_train is not None
    err = np.abs(grid.x_train - grid.modes[grid.y_train]).max()
    assert err < 10 * 0.05


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "moons", "ring8"])
def test_split_is_fixed_across_loads(name: str) -> None:
    a, b = BUILTINS[name](None), BUILTINS[name](None)  # bypass the cache: two real loads
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)  # type: ignore[arg-type]


def test_split_is_stratified_disjoint_and_complete() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 7])
    x = np.arange(len(y), dtype=np.float32)[:, None]  # x holds the row index
    d = split("idx", DataKind.tabular, x, y)
    train_rows, val_rows = d.x_train[:, 0].astype(int), d.x_val[:, 0].astype(int)

    assert set(train_rows).isdisjoint(val_rows)
    assert sorted([*train_rows, *val_rows]) == list(range(len(y)))
    assert np.bincount(d.y_val).tolist() == [10, 6, 1]  # round(20 %) of 50, 30, 7
    np.testing.assert_array_equal(d.y_train, y[train_rows])  # labels follow their rows
    np.testing.assert_array_equal(d.y_val, y[val_rows])


def test_builtin_splits_are_stratified() -> None:
    for name in ("digits", "breast_cancer", "blobs"):
        d = BUILTINS[name](None)
        assert d.y_train is not None and d.y_val is not None
        counts = np.bincount(np.concatenate([d.y_train, d.y_val]))
        assert np.bincount(d.y_val).tolist() == [round(c * 0.2) for c in counts], name


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'") as info:
        load_dataset(DatasetRef(name="cifar"))
    for name in BUILTINS:
        assert name in str(info.value)


def test_mnist_needs_a_data_dir() -> None:
    with pytest.raises(DatasetError, match="MODELKILN_DATA_DIR"):
        load_dataset(DatasetRef(name="mnist"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (LeCun's MNIST format): 0, 0, type 0x08 (ubyte), ndim, big-endian dims, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_idx_files_in_the_data_dir(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28))
    labels = np.repeat(np.arange(10), 5)
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte", labels)

    d = load_dataset(DatasetRef(name="mnist"), data_dir=tmp_path)

    assert (d.kind, d.sample_shape, d.num_classes) == (DataKind.image, (1, 28, 28), 10)
    assert (len(d.x_train), len(d.x_val)) == (40, 10)
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0  # scaled from bytes to [0, 1]
    pixels = (images[:, None] / 255.0).astype(np.float32)
    row = np.flatnonzero((pixels == d.x_val[0]).all(axis=(1, 2, 3)))
    assert len(row) == 1 and labels[row[0]] == d.y_val[0]  # pixels and label stay together


def test_uploaded_dataset_by_id(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_upload(tmp_path, "pts", rng.normal(size=(20, 2)), np.repeat([0, 1], 10), "points")
    write_upload(tmp_path, "raw", rng.normal(size=(20, 3)), None, "tabular")

    labelled = load_dataset(DatasetRef(id="pts"), uploads_dir=tmp_path)
    assert (labelled.kind, labelled.num_classes, len(labelled.x_val)) == (DataKind.points, 2, 4)
    unlabelled = load_dataset(DatasetRef(id="raw"), uploads_dir=tmp_path)
    assert unlabelled.y_train is None and unlabelled.num_classes == 0
    assert (len(unlabelled.x_train), len(unlabelled.x_val)) == (16, 4)

    with pytest.raises(DatasetError, match="no uploaded dataset with id 'nope'"):
        load_dataset(DatasetRef(id="nope"), uploads_dir=tmp_path)
    with pytest.raises(DatasetError, match="uploads directory"):
        load_dataset(DatasetRef(id="pts"))


def test_too_few_rows_to_split() -> None:
    with pytest.raises(DatasetError, match="too few rows"):
        split("one", DataKind.tabular, np.zeros((1, 2)), None)


def test_builtins_are_cached_between_loads() -> None:
    a = load_dataset(DatasetRef(name="moons"))
    assert load_dataset(DatasetRef(name="moons")) is a
    assert datasets._CACHE["moons"] is a
