"""A small convolutional classifier: two conv layers and a linear head, Adam on cross-entropy.

The network, for ``(N, C, H, W)`` images and ``ch`` = ``hyperparams.channels``::

    Conv2d(C, ch, 3, padding=1) -> ReLU -> MaxPool2d(2)          (N, ch, ⌈H/2⌉, ⌈W/2⌉)
    Conv2d(ch, 2ch, 3, padding=1) -> ReLU -> AdaptiveMaxPool2d(2) (N, 2ch, 2, 2)
    flatten -> Dropout -> Linear(8ch, classes)                    (N, classes) logits

The adaptive pool makes the head the same size for any image size (8×8 digits, 28×28 MNIST,
uploads). ``Conv2d`` computes a *cross-correlation* — ``y[i, j] = Σᵤ Σᵥ x[i+u, j+v] k[u, v]``,
the expansion ``y₁₁ = x₁₁k₁₁ + x₁₂k₁₂ + … + x₃₃k₃₃`` of the design notes — not the textbook
convolution ``Σ k(u, v) f(x−u, y−v)``, which is the same sum with the kernel flipped
(``tests/ml/test_cnn.py`` checks both by hand).

The loss is the cross-entropy of the notes, ``L = −Σᵢ tᵢ log gᵢ`` with ``g = softmax(logits)``,
averaged over the batch (:func:`cross_entropy`, checked against ``F.cross_entropy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml import checkpoint as ckpt_io
from ml.checkpoint import Checkpoint
from ml.datasets import DataKind, Dataset
from ml.errors import DatasetError
from ml.normalize import Normalization
from ml.specs import CNNSpec

MODEL = "cnn"
POOL = 2  # the adaptive pool's output side
EVAL_CHUNK = 4096  # validation rows per forward pass (all of digits at once)


def cross_entropy(logits: torch.Tensor, targets_onehot: torch.Tensor) -> torch.Tensor:
    """``L = −Σᵢ tᵢ log gᵢ``, ``g = softmax(logits)``, averaged over the batch.

    ``log_softmax`` (``z − logsumexp(z)``) rather than ``log(softmax(z))``: the same number,
    without the ``log 0 = −inf`` when one logit dwarfs the others.
    """
    log_g = torch.log_softmax(logits, dim=1)  # (N, K)
    return -(targets_onehot * log_g).sum(dim=1).mean()


class ConvNet(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, channels: int = 32, dropout: float = 0.25
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)  # ceil: odd sides (and 1) still work
        self.squeeze = nn.AdaptiveMaxPool2d(POOL)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels * POOL * POOL, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # (N, ch, ⌈H/2⌉, ⌈W/2⌉)
        x = self.squeeze(F.relu(self.conv2(x)))  # (N, 2ch, 2, 2)
        x = self.dropout(x.flatten(1))  # (N, 8ch)
        return self.head(x)  # (N, K) logits


def build_net(config: dict[str, Any]) -> ConvNet:
    """The network a checkpoint's config describes (weights not loaded)."""
    return ConvNet(
        int(config["input_shape"][0]),
        int(config["num_classes"]),
        int(config["channels"]),
        float(config["dropout"]),
    )


def check_dataset(dataset: Dataset) -> None:
    """The CNN classifies labelled images; say clearly when the data is something else."""
    if dataset.kind is not DataKind.image or len(dataset.sample_shape) != 3:
        raise DatasetError(
            f"the cnn needs images (N, C, H, W), but {dataset.name!r} is {dataset.kind.value} "
            f"data of shape {list(dataset.sample_shape)}; use the neuron for tabular data"
        )
    if dataset.y_train is None or dataset.y_val is None:
        raise DatasetError(f"the cnn needs class labels, but {dataset.name!r} is unlabelled")
    if dataset.num_classes < 2:
        raise DatasetError(f"the cnn needs at least 2 classes; {dataset.name!r} has 1")


class CNNTrainer:
    """:class:`~ml.loop.Trainer` for :class:`ConvNet`; the whole dataset stays on the device."""

    drop_last = False

    def __init__(self, spec: CNNSpec, dataset: Dataset, device: torch.device) -> None:
        check_dataset(dataset)
        assert dataset.y_train is not None and dataset.y_val is not None
        hp = spec.hyperparams
        self.spec = spec
        self.dataset = dataset
        self.device = device
        self.num_classes = dataset.num_classes
        self.norm = Normalization.fit(dataset.x_train, "standard", "channel")
        self.x_train = self._tensor(self.norm.apply(dataset.x_train))  # (N, C, H, W)
        self.y_train = torch.from_numpy(dataset.y_train).to(device)  # (N,) int64
        self.t_train = F.one_hot(self.y_train, self.num_classes).float()  # (N, K) targets
        self.x_val = self._tensor(self.norm.apply(dataset.x_val))
        self.y_val = torch.from_numpy(dataset.y_val).to(device)
        self.n_train = len(dataset.x_train)
        self.examples_per_step = hp.batch_size
        # Built on the CPU from the global RNG (seeded by ml.train), then moved: a seed gives
        # the same initial weights on any device.
        self.net = ConvNet(dataset.sample_shape[0], self.num_classes, hp.channels, hp.dropout)
        self.net.to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)

    def train_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        self.net.train()
        logits = self.net(self.x_train[batch])
        loss = cross_entropy(logits, self.t_train[batch])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == self.y_train[batch]).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of the net (eval mode: no dropout) on ``x, y``."""
        self.net.eval()
        logits = torch.cat([self.net(chunk) for chunk in x.split(EVAL_CHUNK)])
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        loss_v, acc_v = torch.stack([loss, accuracy]).tolist()
        return loss_v, acc_v

    def end_epoch(self, epoch: int, run_dir: Path) -> tuple[dict[str, float], list[Path]]:
        val_loss, val_accuracy = self.evaluate(self.x_val, self.y_val)
        return {"val_loss": val_loss, "val_accuracy": val_accuracy}, []

    def weights(self) -> dict[str, torch.Tensor]:
        return ckpt_io.module_tensors("net", self.net)

    def train_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = ckpt_io.optimizer_to_tensors("adam", self.opt)
        return tensors, {"adam": meta}

    def load(self, ckpt: Checkpoint) -> None:
        ckpt_io.load_module("net", self.net, ckpt.weights)
        if ckpt.state:
            ckpt_io.optimizer_from_tensors(
                "adam", self.opt, ckpt.state, ckpt.config["train_state"]["adam"]
            )

    def config(self) -> dict[str, Any]:
        hp = self.spec.hyperparams
        return {
            "model": MODEL,
            "spec": self.spec.model_dump(mode="json"),
            "dataset": self.dataset.describe(),
            "normalization": self.norm.to_dict(),
            "input_shape": list(self.dataset.sample_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.dataset.class_names),
            "channels": hp.channels,
            "dropout": hp.dropout,
        }
