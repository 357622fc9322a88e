"""The CNN: its convolution against the notes' expansion, cross-entropy, shapes, learning."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml.cnn import CNNTrainer, ConvNet, cross_entropy
from ml.datasets import DataKind, Dataset, split
from ml.errors import DatasetError
from ml.specs import EXAMPLES
from ml.training import parse_spec, train
from tests.ml.conftest import cnn_spec

# A hand-made 4×4 input and an asymmetric 3×3 kernel, 1-indexed as in the notes: x[i][j] = xᵢⱼ.
X = [
    [1.0, 2.0, 3.0, 4.0],
    [5.0, 6.0, 7.0, 8.0],
    [9.0, 10.0, 11.0, 12.0],
    [13.0, 14.0, 15.0, 16.0],
]
K = [
    [1.0, 0.0, -1.0],
    [2.0, 3.0, 0.0],
    [0.0, -2.0, 4.0],
]


def first_conv(kernel: list[list[float]]) -> torch.Tensor:
    """The CNN's first conv layer, with ``kernel`` loaded and bias 0, applied to X."""
    net = ConvNet(in_channels=1, num_classes=2, channels=1)
    with torch.no_grad():
        net.conv1.weight.copy_(torch.tensor(kernel).reshape(1, 1, 3, 3))
        net.conv1.bias.zero_()
        return net.conv1(torch.tensor(X).reshape(1, 1, 4, 4))[0, 0]  # (4, 4): padding=1


def test_first_conv_layer_is_the_notes_expansion_written_out() -> None:
    def x(i: int, j: int) -> float:
        return X[i - 1][j - 1]

    def k(i: int, j: int) -> float:
        return K[i - 1][j - 1]

    # The notes' valid outputs; with padding=1 they sit at rows/cols 2..3 (1-indexed).
    y11 = (
        x(1, 1) * k(1, 1) + x(1, 2) * k(1, 2) + x(1, 3) * k(1, 3)
        + x(2, 1) * k(2, 1) + x(2, 2) * k(2, 2) + x(2, 3) * k(2, 3)
        + x(3, 1) * k(3, 1) + x(3, 2) * k(3, 2) + x(3, 3) * k(3, 3)
    )  # fmt: skip
    y12 = (
        x(1, 2) * k(1, 1) + x(1, 3) * k(1, 2) + x(1, 4) * k(1, 3)
        + x(2, 2) * k(2, 1) + x(2, 3) * k(2, 2) + x(2, 4) * k(2, 3)
        + x(3, 2) * k(3, 1) + x(3, 3) * k(3, 2) + x(3, 4) * k(3, 3)
    )  # fmt: skip
    y21 = (
        x(2, 1) * k(1, 1) + x(2, 2) * k(1, 2) + x(2, 3) * k(1, 3)
        + x(3, 1) * k(2, 1) + x(3, 2) * k(2, 2) + x(3, 3) * k(2, 3)
        + x(4, 1) * k(3, 1) + x(4, 2) * k(3, 2) + x(4, 3) * k(3, 3)
    )  # fmt: skip
    y22 = (
        x(2, 2) * k(1, 1) + x(2, 3) * k(1, 2) + x(2, 4) * k(1, 3)
        + x(3, 2) * k(2, 1) + x(3, 3) * k(2, 2) + x(3, 4) * k(2, 3)
        + x(4, 2) * k(3, 1) + x(4, 3) * k(3, 2) + x(4, 4) * k(3, 3)
    )  # fmt: skip
    # The top-left corner sees the zero padding: only k22, k23, k32, k33 meet the image.
    corner = x(1, 1) * k(2, 2) + x(1, 2) * k(2, 3) + x(2, 1) * k(3, 2) + x(2, 2) * k(3, 3)
    assert (y11, y12, y21, y22, corner) == (50.0, 57.0, 78.0, 85.0, 17.0)  # by hand, too

    y = first_conv(K)

    assert y[1:3, 1:3].tolist() == [[y11, y12], [y21, y22]]  # small integers: exact
    assert y[0, 0].item() == corner


def test_conv2d_is_cross_correlation_and_a_flipped_kernel_gives_true_convolution() -> None:
    # True convolution (k ★ f)(i, j) = Σᵤ Σᵥ k(u, v) f(i − u, j − v), centred kernel u, v ∈ −1..1,
    # over the valid interior, summed by hand.
    f = np.array(X)
    kc = {(u, v): K[u + 1][v + 1] for u in (-1, 0, 1) for v in (-1, 0, 1)}
    true_conv = [
        [sum(kc[u, v] * f[i - u, j - v] for u in (-1, 0, 1) for v in (-1, 0, 1)) for j in (1, 2)]
        for i in (1, 2)
    ]
    flipped = torch.tensor(K).flip(0, 1).tolist()

    assert first_conv(flipped)[1:3, 1:3].tolist() == true_conv
    assert first_conv(K)[1:3, 1:3].tolist() != true_conv  # the kernel is not symmetric


def test_cross_entropy_is_minus_sum_t_log_softmax_and_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 3, 1, 1, 2])
    t = F.one_hot(targets, 4).double()

    softmax = logits.exp() / logits.exp().sum(dim=1, keepdim=True)  # gᵢ
    by_hand = -(t * softmax.log()).sum(dim=1).mean()  # −Σᵢ tᵢ log gᵢ, batch mean

    ours = cross_entropy(logits, t)
    assert torch.allclose(ours, by_hand, rtol=1e-14, atol=0)
    assert torch.allclose(ours, F.cross_entropy(logits, targets), rtol=1e-14, atol=0)
    # Equal logits over K classes: g = 1/K, so L = log K exactly.
    assert cross_entropy(torch.zeros(3, 4, dtype=torch.float64), t[:3]).item() == math.log(4)


def test_cross_entropy_stays_finite_for_huge_logits() -> None:
    logits = torch.tensor([[1000.0, -1000.0]])
    t = torch.tensor([[0.0, 1.0]])
    assert cross_entropy(logits, t).item() == pytest.approx(2000.0)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 5, 7), (1, 1, 1)])
def test_any_image_size_gives_one_logit_per_class(shape: tuple[int, int, int]) -> None:
    net = ConvNet(in_channels=shape[0], num_classes=10, channels=4)
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_rejects_tabular_and_unlabelled_data(
    tiny_binary: Dataset, make_trainer: Callable[..., Any]
) -> None:
    spec = cnn_spec()
    rng = np.random.default_rng(0)
    unlabelled = split("nolabels", DataKind.image, rng.uniform(size=(10, 1, 4, 4)), None)
    with pytest.raises(DatasetError, match="needs images.*tabular"):
        make_trainer(spec, tiny_binary)
    with pytest.raises(DatasetError, match="unlabelled"):
        make_trainer(spec, unlabelled)


def test_rejects_builtin_breast_cancer(tmp_path: Any) -> None:
    spec = parse_spec({"model": "cnn", "dataset": {"name": "breast_cancer"}})
    with pytest.raises(DatasetError, match="needs images"):
        train(spec, run_dir=tmp_path)


def test_train_step_and_validation_on_tiny_images(
    tiny_images: Dataset, make_trainer: Callable[..., Any]
) -> None:
    trainer: CNNTrainer = make_trainer(cnn_spec(batch_size=8), tiny_images)
    before = {k: v.clone() for k, v in trainer.weights().items()}
    out = trainer.train_step(torch.arange(8))
    assert set(out) == {"loss", "accuracy"}
    assert 0.0 <= out["accuracy"].item() <= 1.0
    assert any(not torch.equal(before[k], v) for k, v in trainer.weights().items())

    val, files = trainer.end_epoch(1, run_dir=None)  # type: ignore[arg-type]
    assert set(val) == {"val_loss", "val_accuracy"} and files == []
    assert not trainer.net.training  # validation ran in eval mode (no dropout)
    config = trainer.config()
    assert config["input_shape"] == [1, 6, 6] and config["num_classes"] == 3
    assert config["normalization"]["per"] == "channel"
    tensors, meta = trainer.train_state()
    assert "adam.0.exp_avg" in tensors and "param_groups" in meta["adam"]


@pytest.mark.slow
def test_cnn_learns_digits(tmp_path: Any) -> None:
    spec = parse_spec(EXAMPLES["cnn"])  # the Swagger example must train as shown
    start = time.perf_counter()
    result = train(spec, run_dir=tmp_path)
    seconds = time.perf_counter() - start

    print(f"cnn digits: val_accuracy {result.metrics['val_accuracy']:.4f} in {seconds:.1f}s")
    assert result.metrics["val_accuracy"] >= 0.97  # the final epoch, not the best one
