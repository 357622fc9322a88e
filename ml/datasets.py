"""Built-in and uploaded datasets, each with a fixed, seeded train/validation split.

Every loader returns a :class:`Dataset` of raw float32 features (images as ``(N, C, H, W)``,
everything else as ``(N, D)``) and int64 labels. Normalisation is *not* applied here: each
model fits its own on the training split (:mod:`ml.normalize`) and records it in the
checkpoint, so predict and sample undo exactly what training did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from ml.errors import DatasetError
from ml.specs import DatasetRef

SPLIT_SEED = 20260101  # the train/validation split never depends on a job's seed
VAL_FRACTION = 0.2


class DataKind(StrEnum):
    image = "image"  # x is (N, C, H, W), pixel values in [0, 1]
    tabular = "tabular"  # x is (N, D), arbitrary real features
    points = "points"  # x is (N, 2): 2-D synthetic data, plotted as a scatter


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: DataKind
    x_train: np.ndarray  # float32
    y_train: np.ndarray | None  # int64 class ids, or None for an unlabelled upload
    x_val: np.ndarray
    y_val: np.ndarray | None
    num_classes: int  # 0 when unlabelled
    class_names: list[str] = field(default_factory=list)
    # For mixtures of Gaussians: the true mode centres and their std (to score a GAN).
    modes: np.ndarray | None = None
    mode_std: float | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict[str, object]:
        """A JSON summary (the API lists it)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "shape": list(self.sample_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "train_size": int(len(self.x_train)),
            "val_size": int(len(self.x_val)),
        }


def split(
    name: str,
    kind: DataKind,
    x: np.ndarray,
    y: np.ndarray | None,
    class_names: list[str] | None = None,
    **extra: object,
) -> Dataset:
    """Shuffle with :data:`SPLIT_SEED` and hold out :data:`VAL_FRACTION`, stratified by label."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(SPLIT_SEED)
    n = len(x)
    if y is None:
        order = rng.permutation(n)
        n_val = max(1, int(round(n * VAL_FRACTION)))
        val, train = order[:n_val], order[n_val:]
        num_classes = 0
    else:
        y = np.asarray(y, dtype=np.int64)
        val_parts, train_parts = [], []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            k = int(round(len(idx) * VAL_FRACTION))
            val_parts.append(idx[:k])
            train_parts.append(idx[k:])
        val = rng.permutation(np.concatenate(val_parts))
        train = rng.permutation(np.concatenate(train_parts))
        num_classes = int(y.max()) + 1
    if len(train) == 0 or len(val) == 0:
        raise DatasetError(f"dataset {name!r} has too few rows ({n}) for a train/validation split")
    names = class_names or ([str(i) for i in range(num_classes)] if num_classes else [])
    return Dataset(
        name=name,
        kind=kind,
        x_train=x[train],
        y_train=None if y is None else y[train],
        x_val=x[val],
        y_val=None if y is None else y[val],
        num_classes=num_classes,
        class_names=names,
        **extra,  # type: ignore[arg-type]
    )


# --- built-ins -------------------------------------------------------------------------------


def _digits(_: Path | None) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    return split("digits", DataKind.image, x, d.target)


def _breast_cancer(_: Path | None) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return split(
        "breast_cancer", DataKind.tabular, d.data, d.target, [str(n) for n in d.target_names]
    )


def _moons(_: Path | None) -> Dataset:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.1, random_state=SPLIT_SEED % 2**31)
    return split("moons", DataKind.points, x, y)


def _blobs(_: Path | None) -> Dataset:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=2000, centers=3, cluster_std=1.0, random_state=SPLIT_SEED % 2**31)
    return split("blobs", DataKind.points, x, y)


def mixture(centres: np.ndarray, std: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from an equal-weight Gaussian mixture; labels are the mode index."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(centres), size=n)
    x = centres[y] + rng.normal(0.0, std, size=(n, 2))
    return x.astype(np.float32), y


def ring8_modes() -> np.ndarray:
    angles = 2 * math.pi * np.arange(8) / 8
    return np.stack([2 * np.cos(angles), 2 * np.sin(angles)], axis=1)  # radius 2


def grid25_modes() -> np.ndarray:
    g = np.arange(-4, 5, 2, dtype=np.float64)  # -4, -2, 0, 2, 4
    return np.array([(a, b) for a in g for b in g])


RING8_STD = 0.02
GRID25_STD = 0.05


def _ring8(_: Path | None) -> Dataset:
    modes = ring8_modes()
    x, y = mixture(modes, RING8_STD, 10_000, SPLIT_SEED)
    return split("ring8", DataKind.points, x, y, modes=modes, mode_std=RING8_STD)


def _grid25(_: Path | None) -> Dataset:
    modes = grid25_modes()
    x, y = mixture(modes, GRID25_STD, 25_000, SPLIT_SEED)
    return split("grid25", DataKind.points, x, y, modes=modes, mode_std=GRID25_STD)


def _idx_dataset(name: str, prefix: str = "") -> Callable[[Path | None], Dataset]:
    def load(data_dir: Path | None) -> Dataset:
        from ml.uploads import load_idx_pair

        if data_dir is None:
            raise DatasetError(f"{name} needs MODELKILN_DATA_DIR (IDX files) and none is set")
        folder = Path(data_dir) / name
        x, y = load_idx_pair(
            folder / f"{prefix}train-images-idx3-ubyte", folder / f"{prefix}train-labels-idx1-ubyte"
        )
        return split(name, DataKind.image, x[:, None, :, :] / 255.0, y)

    return load


BUILTINS: dict[str, Callable[[Path | None], Dataset]] = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "moons": _moons,
    "blobs": _blobs,
    "ring8": _ring8,
    "grid25": _grid25,
    "mnist": _idx_dataset("mnist"),
    "fashion_mnist": _idx_dataset("fashion_mnist"),
}

_CACHE: dict[str, Dataset] = {}


def load_dataset(
    ref: DatasetRef, *, uploads_dir: Path | None = None, data_dir: Path | None = None
) -> Dataset:
    """The dataset ``ref`` names: a built-in by name, or an upload stored under ``uploads_dir``."""
    if ref.name is not None:
        if ref.name not in BUILTINS:
            known = ", ".join(BUILTINS)
            raise DatasetError(f"unknown dataset {ref.name!r}; built-in datasets are: {known}")
        if ref.name not in _CACHE or ref.name in ("mnist", "fashion_mnist"):
            _CACHE[ref.name] = BUILTINS[ref.name](data_dir)
        return _CACHE[ref.name]
    if uploads_dir is None:
        raise DatasetError("uploaded datasets need an uploads directory")
    path = Path(uploads_dir) / f"{ref.id}.npz"
    if not path.is_file():
        raise DatasetError(f"no uploaded dataset with id {ref.id!r}")
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        x = f["x"]
        y = f["y"] if "y" in f.files else None
    return split(meta.get("name", ref.id), DataKind(meta["kind"]), x, y, meta.get("class_names"))
