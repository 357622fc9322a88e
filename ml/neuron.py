r"""One sigmoid neuron, trained by gradient descent with gradients written out by hand.

The model and its cost, for a batch of N examples ``xᵢ ∈ ℝᴰ`` with labels ``yᵢ ∈ {0, 1}``::

    zᵢ = Σⱼ wⱼ xᵢⱼ + b          (the pre-activation)
    ŷᵢ = σ(zᵢ) = 1 / (1 + e^(−zᵢ))
    C  = (1/N) Σᵢ (yᵢ − ŷᵢ)²     (mean squared error)

The chain rule, one factor at a time::

    ∂C/∂ŷᵢ  = (2/N)(ŷᵢ − yᵢ)        d/dŷ (y − ŷ)² = −2(y − ŷ) = 2(ŷ − y)
    ∂ŷᵢ/∂zᵢ = σ(zᵢ)(1 − σ(zᵢ))       = ŷᵢ(1 − ŷᵢ)
    ∂zᵢ/∂wⱼ = xᵢⱼ,   ∂zᵢ/∂b = 1

so with ``δᵢ = ∂C/∂zᵢ = (2/N)(ŷᵢ − yᵢ) ŷᵢ(1 − ŷᵢ)``::

    ∂C/∂wⱼ = Σᵢ δᵢ xᵢⱼ   (= Xᵀδ)        ∂C/∂b = Σᵢ δᵢ

and the update is ``w ← w − α ∂C/∂w``, ``b ← b − α ∂C/∂b``.

**A sign error in the design notes.** They write the first factor as ``(2/N) Σ (yᵢ − ŷᵢ)``.
That is ``−∂C/∂ŷ``: the *descent* direction, not the gradient. Plugging it into
``w ← w − α ∂C/∂w`` steps uphill and the cost grows (``tests/ml/test_neuron.py`` shows it).
We use ``(2/N)(ŷᵢ − yᵢ)``. :func:`neuron_grads` is checked against autograd in float64.

Training uses these tensor formulas under ``torch.no_grad()`` — no autograd — on any device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.checkpoint import Checkpoint
from ml.datasets import DataKind, Dataset
from ml.errors import CheckpointError, DatasetError
from ml.normalize import Normalization
from ml.specs import NeuronSpec

MODEL = "neuron"


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``ŷ = σ(x·w + b)``: (N, D) inputs, (D,) weights, (1,) bias -> (N,) probabilities."""
    return torch.sigmoid(x @ w + b)


def forward_backward(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ŷ, C, ∂C/∂w, ∂C/∂b)`` for one batch, by the chain rule in the module docstring."""
    n = x.shape[0]
    y_hat = forward(x, w, b)  # (N,)
    cost = ((y - y_hat) ** 2).mean()  # C = (1/N) Σ (yᵢ − ŷᵢ)²
    dc_dyhat = (2.0 / n) * (y_hat - y)  # (N,)  ∂C/∂ŷᵢ — not the notes' (yᵢ − ŷᵢ)
    dyhat_dz = y_hat * (1.0 - y_hat)  # (N,)  σ'(z) = σ(z)(1 − σ(z))
    delta = dc_dyhat * dyhat_dz  # (N,)  ∂C/∂zᵢ
    dw = x.T @ delta  # (D,)  Σᵢ δᵢ xᵢ, since ∂zᵢ/∂w = xᵢ
    db = delta.sum().reshape(1)  # (1,)  Σᵢ δᵢ, since ∂zᵢ/∂b = 1
    return y_hat, cost, dw, db


def neuron_grads(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(C, ∂C/∂w, ∂C/∂b)``: the cost and its hand-written gradient, a pure function."""
    _, cost, dw, db = forward_backward(x, y, w, b)
    return cost, dw, db


def check_dataset(dataset: Dataset) -> None:
    """The neuron is a binary classifier of feature vectors; say clearly when data is not."""
    if dataset.kind not in (DataKind.tabular, DataKind.points):
        raise DatasetError(
            f"the neuron needs tabular or 2-D points data, but {dataset.name!r} is "
            f"{dataset.kind.value} data; use the cnn for images"
        )
    if dataset.y_train is None or dataset.y_val is None:
        raise DatasetError(f"the neuron needs labels (0/1), but {dataset.name!r} is unlabelled")
    if dataset.num_classes != 2:
        raise DatasetError(
            f"the neuron is a binary classifier and needs exactly 2 classes, but "
            f"{dataset.name!r} has {dataset.num_classes}; use the cnn or pick a binary dataset "
            "(breast_cancer, moons)"
        )


class NeuronTrainer:
    """:class:`~ml.loop.Trainer` for one sigmoid neuron (no optimizer: plain gradient descent)."""

    drop_last = False

    def __init__(self, spec: NeuronSpec, dataset: Dataset, device: torch.device) -> None:
        check_dataset(dataset)
        assert dataset.y_train is not None and dataset.y_val is not None
        self.spec = spec
        self.dataset = dataset
        self.device = device
        self.lr = spec.hyperparams.lr
        self.norm = Normalization.fit(dataset.x_train, "standard", "feature")
        # The whole (small) dataset lives on the device; a step indexes rows from it.
        self.x_train = self._tensor(self.norm.apply(dataset.x_train))  # (N, D)
        self.y_train = self._tensor(dataset.y_train.astype(np.float32))  # (N,)
        self.x_val = self._tensor(self.norm.apply(dataset.x_val))
        self.y_val = self._tensor(dataset.y_val.astype(np.float32))
        self.n_train = len(dataset.x_train)
        self.examples_per_step = spec.hyperparams.batch_size
        self.input_dim = int(dataset.x_train.shape[1])
        # Small random weights from the global RNG (seeded by ml.train), drawn on the CPU so
        # a seed gives the same start on any device.
        self.w = (0.01 * torch.randn(self.input_dim)).to(device)  # (D,)
        self.b = torch.zeros(1, device=device)  # (1,)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)

    @torch.no_grad()
    def train_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = self.x_train[batch], self.y_train[batch]
        y_hat, cost, dw, db = forward_backward(x, y, self.w, self.b)
        self.w -= self.lr * dw  # w ← w − α ∂C/∂w
        self.b -= self.lr * db  # b ← b − α ∂C/∂b
        accuracy = ((y_hat > 0.5).float() == y).float().mean()
        return {"loss": cost, "accuracy": accuracy}

    @torch.no_grad()
    def end_epoch(self, epoch: int, run_dir: Path) -> tuple[dict[str, float], list[Path]]:
        y_hat = forward(self.x_val, self.w, self.b)
        loss = ((self.y_val - y_hat) ** 2).mean()
        accuracy = ((y_hat > 0.5).float() == self.y_val).float().mean()
        values = torch.stack([loss, accuracy]).tolist()
        return {"val_loss": values[0], "val_accuracy": values[1]}, []

    def weights(self) -> dict[str, torch.Tensor]:
        return {"neuron.weight": self.w, "neuron.bias": self.b}

    def train_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}  # plain gradient descent: the weights are the whole state

    def load(self, ckpt: Checkpoint) -> None:
        w, b = load_weights(ckpt.weights, self.input_dim)
        self.w, self.b = w.to(self.device), b.to(self.device)

    def config(self) -> dict[str, Any]:
        return {
            "model": MODEL,
            "spec": self.spec.model_dump(mode="json"),
            "dataset": self.dataset.describe(),
            "normalization": self.norm.to_dict(),
            "input_dim": self.input_dim,
            "num_classes": 2,
            "class_names": list(self.dataset.class_names),
        }


def load_weights(
    weights: dict[str, torch.Tensor], input_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, b)`` from checkpoint tensors, checked against the expected input size."""
    try:
        w, b = weights["neuron.weight"], weights["neuron.bias"]
    except KeyError as exc:
        raise CheckpointError(f"not a neuron checkpoint: missing tensor {exc}") from exc
    if tuple(w.shape) != (input_dim,) or tuple(b.shape) != (1,):
        raise CheckpointError(
            f"neuron checkpoint shapes {tuple(w.shape)}, {tuple(b.shape)} do not fit "
            f"{input_dim} inputs"
        )
    return w.float().clone(), b.float().clone()


def predict_proba(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D) normalised inputs -> (N, 2) probabilities ``[P(class 0), P(class 1)]``."""
    p1 = forward(x, w, b)  # (N,)
    return torch.stack([1.0 - p1, p1], dim=1)
