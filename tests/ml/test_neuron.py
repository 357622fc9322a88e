"""The sigmoid neuron: hand-written gradient vs autograd, the notes' sign error, learning."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from ml.datasets import DataKind, Dataset, split
from ml.errors import DatasetError
from ml.events import TrainEvent
from ml.neuron import NeuronTrainer, forward, neuron_grads
from ml.specs import EXAMPLES
from ml.training import parse_spec, train
from tests.ml.conftest import neuron_spec


def autograd_grads(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same cost, differentiated by autograd."""
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    cost = ((y - torch.sigmoid(x @ w + b)) ** 2).mean()
    dw, db = torch.autograd.grad(cost, (w, b))
    return cost.detach(), dw, db


def cost(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return float(((y - forward(x, w, b)) ** 2).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hand_gradient_equals_autograd_in_float64(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (7,), generator=g).double()
    w = torch.randn(4, generator=g, dtype=torch.float64)
    b = torch.randn(1, generator=g, dtype=torch.float64)

    c_hand, dw_hand, db_hand = neuron_grads(x, y, w, b)
    c_auto, dw_auto, db_auto = autograd_grads(x, y, w, b)

    assert dw_hand.dtype == torch.float64
    assert torch.allclose(c_hand, c_auto, rtol=1e-13, atol=0)
    assert torch.allclose(dw_hand, dw_auto, rtol=1e-12, atol=1e-15)
    assert torch.allclose(db_hand, db_auto, rtol=1e-12, atol=1e-15)


def test_gradient_exact_values_at_zero_weights() -> None:
    # w = 0, b = 0: ŷ = σ(0) = 1/2 for both rows, y = (1, 0).
    # C = ((1 − ½)² + (0 − ½)²)/2 = 1/4.  ∂C/∂ŷ = (2/2)(ŷ − y) = (−½, ½);  σ' = ¼;
    # δ = (−⅛, ⅛);  ∂C/∂w = Σ δᵢ xᵢ = −⅛·(1, 0) + ⅛·(0, 1) = (−⅛, ⅛);  ∂C/∂b = 0.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    w = torch.zeros(2, dtype=torch.float64)
    b = torch.zeros(1, dtype=torch.float64)
    c, dw, db = neuron_grads(x, y, w, b)
    assert c.item() == 0.25
    assert dw.tolist() == [-0.125, 0.125]
    assert db.tolist() == [0.0]


def test_the_notes_sign_climbs_the_cost() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).double()
    w = torch.zeros(3, dtype=torch.float64)
    b = torch.zeros(1, dtype=torch.float64)
    lr = 0.5
    c0, dw, db = neuron_grads(x, y, w, b)

    # The notes' first factor (2/N) Σ (yᵢ − ŷᵢ) is −∂C/∂ŷ, so their "gradient" is −(ours).
    n = len(y)
    y_hat = forward(x, w, b)
    delta_notes = (2.0 / n) * (y - y_hat) * y_hat * (1 - y_hat)
    dw_notes, db_notes = x.T @ delta_notes, delta_notes.sum().reshape(1)
    assert torch.allclose(dw_notes, -dw) and torch.allclose(db_notes, -db)

    assert cost(x, y, w - lr * dw, b - lr * db) < c0.item()  # ours descends
    assert cost(x, y, w - lr * dw_notes, b - lr * db_notes) > c0.item()  # theirs climbs


def test_a_training_step_is_w_minus_lr_times_the_hand_gradient(
    tiny_binary: Dataset, make_trainer: Callable[..., Any]
) -> None:
    spec = parse_spec(
        {"model": "neuron", "dataset": {"name": "x"}, "hyperparams": {"lr": 0.3, "batch_size": 8}}
    )
    trainer: NeuronTrainer = make_trainer(spec, tiny_binary)
    batch = torch.tensor([0, 3, 5, 7, 11])
    w0, b0 = trainer.w.clone(), trainer.b.clone()
    c, dw, db = neuron_grads(trainer.x_train[batch], trainer.y_train[batch], w0, b0)

    out = trainer.train_step(batch)

    assert torch.equal(trainer.w, w0 - 0.3 * dw)
    assert torch.equal(trainer.b, b0 - 0.3 * db)
    assert torch.equal(out["loss"], c)
    assert not trainer.w.requires_grad  # plain tensors: no autograd graph anywhere


def test_training_lowers_the_cost_on_the_tiny_set(
    tiny_binary: Dataset, make_trainer: Callable[..., Any]
) -> None:
    spec = parse_spec(
        {"model": "neuron", "dataset": {"name": "x"}, "hyperparams": {"lr": 1.0, "batch_size": 64}}
    )
    trainer: NeuronTrainer = make_trainer(spec, tiny_binary)
    everything = torch.arange(trainer.n_train)
    first = trainer.train_step(everything)["loss"].item()
    for _ in range(50):
        last = trainer.train_step(everything)["loss"].item()
    assert last < first / 2


def test_rejects_multiclass_images_and_unlabelled_data(
    tiny_images: Dataset, make_trainer: Callable[..., Any]
) -> None:
    spec = neuron_spec()
    rng = np.random.default_rng(0)
    three = split("three", DataKind.points, rng.normal(size=(30, 2)), np.repeat([0, 1, 2], 10))
    unlabelled = split("nolabels", DataKind.tabular, rng.normal(size=(30, 2)), None)

    with pytest.raises(DatasetError, match="exactly 2 classes.*has 3"):
        make_trainer(spec, three)
    with pytest.raises(DatasetError, match="unlabelled"):
        make_trainer(spec, unlabelled)
    with pytest.raises(DatasetError, match="tabular or 2-D points.*image"):
        make_trainer(spec, tiny_images)


def test_rejects_builtin_digits_and_blobs_with_a_clear_message(tmp_path: Any) -> None:
    for name, words in [("digits", "image data"), ("blobs", "has 3")]:
        spec = parse_spec({"model": "neuron", "dataset": {"name": name}})
        with pytest.raises(DatasetError, match=words):
            train(spec, run_dir=tmp_path / name)


def test_config_records_what_rebuilding_needs(
    tiny_binary: Dataset, make_trainer: Callable[..., Any]
) -> None:
    trainer = make_trainer(neuron_spec(), tiny_binary)
    config = trainer.config()
    assert config["model"] == "neuron"
    assert config["input_dim"] == 3 and config["num_classes"] == 2
    assert config["dataset"]["name"] == "tiny_binary"
    assert config["spec"]["hyperparams"]["lr"] == 0.5
    assert config["normalization"]["method"] == "standard"
    assert config["normalization"]["shape"] == [3]
    assert trainer.train_state() == ({}, {})


@pytest.mark.slow
def test_neuron_learns_breast_cancer(tmp_path: Any) -> None:
    spec = parse_spec(EXAMPLES["neuron"])  # the Swagger example must train as shown
    val_acc: list[float] = []

    def on_event(event: TrainEvent) -> None:
        if "val_accuracy" in event.metrics:
            val_acc.append(event.metrics["val_accuracy"])

    start = time.perf_counter()
    result = train(spec, on_event, run_dir=tmp_path)
    seconds = time.perf_counter() - start

    print(
        f"neuron breast_cancer: val_accuracy {result.metrics['val_accuracy']:.4f} in {seconds:.1f}s"
    )
    assert len(val_acc) == spec.hyperparams.epochs
    assert result.metrics["val_accuracy"] >= 0.95  # the final epoch, not the best one
