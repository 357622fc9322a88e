"""The shared training loop: determinism, stop and exact resume, NaN handling, events."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ml import checkpoint as ckpt_io
from ml.datasets import load_dataset
from ml.errors import NonFiniteLossError
from ml.events import EventKind, TrainEvent, TrainStatus
from ml.loop import run_loop, steps_per_epoch
from ml.specs import AnySpec
from ml.training import train
from tests.ml.conftest import CPU, cnn_spec, neuron_spec

SPECS: dict[str, Callable[..., AnySpec]] = {"cnn": cnn_spec, "neuron": neuron_spec}


def checkpoint_of(run_dir: Path) -> ckpt_io.Checkpoint:
    return ckpt_io.load(run_dir / "checkpoint")


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def stop_after(step: int) -> tuple[Callable[[TrainEvent], None], Callable[[], bool]]:
    """An ``on_event``/``should_stop`` pair that asks to stop once ``step`` has run."""
    seen = {"step": 0}

    def on_event(event: TrainEvent) -> None:
        seen["step"] = max(seen["step"], event.step)

    return on_event, lambda: seen["step"] >= step


def collect_losses(into: list[float]) -> Callable[[TrainEvent], None]:
    def on_event(event: TrainEvent) -> None:
        if "loss" in event.metrics:
            into.append(event.metrics["loss"])

    return on_event


@pytest.mark.parametrize("model", ["cnn", "neuron"])
def test_same_spec_and_seed_give_the_same_losses(model: str, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        losses: list[float] = []
        train(SPECS[model](), collect_losses(losses), run_dir=tmp_path / name)
        runs.append(losses)
    assert runs[0] == runs[1] and len(runs[0]) > 10

    other: list[float] = []
    spec = SPECS[model]().model_copy(update={"seed": 1})
    train(spec, collect_losses(other), run_dir=tmp_path / "c")
    assert other != runs[0]  # the seed matters (init and batch order)


@pytest.mark.parametrize("model", ["cnn", "neuron"])
@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_stop_and_resume_gives_the_very_same_weights(
    model: str, where: str, tmp_path: Path
) -> None:
    spec = SPECS[model]()  # 2 epochs; the CNN has dropout and Adam state, the hard case
    straight = train(spec, run_dir=tmp_path / "straight")
    assert straight.status is TrainStatus.completed

    spe = straight.total_steps // 2
    stop_step = spe if where == "epoch_end" else spe // 2 + 1
    on_event, should_stop = stop_after(stop_step)
    first = train(spec, on_event, should_stop, run_dir=tmp_path / "resumed")
    assert (first.status, first.step) == (TrainStatus.stopped, stop_step)
    assert checkpoint_of(tmp_path / "resumed").config["step"] == stop_step

    second = train(spec, run_dir=tmp_path / "resumed", resume=True)
    assert (second.status, second.step) == (TrainStatus.completed, straight.step)

    a, b = checkpoint_of(tmp_path / "straight"), checkpoint_of(tmp_path / "resumed")
    assert_same_tensors(a.weights, b.weights)
    assert_same_tensors(a.state, b.state)  # Adam moments and RNG states too
    assert second.metrics == straight.metrics


def test_should_stop_is_honoured_after_one_step_with_a_checkpoint(tmp_path: Path) -> None:
    events: list[TrainEvent] = []
    result = train(cnn_spec(), events.append, lambda: True, run_dir=tmp_path)

    assert (result.status, result.step, result.epoch) == (TrainStatus.stopped, 1, 1)
    assert [e.step for e in events if e.kind is EventKind.metrics] == [1]
    saved = [e for e in events if e.kind is EventKind.checkpoint]
    assert len(saved) == 1 and saved[0].step == 1 and saved[0].path == tmp_path / "checkpoint"
    assert checkpoint_of(tmp_path).config["step"] == 1


def test_stop_at_step_k_leaves_a_checkpoint_at_step_k(tmp_path: Path) -> None:
    on_event, should_stop = stop_after(4)
    result = train(neuron_spec(), on_event, should_stop, run_dir=tmp_path)
    assert (result.status, result.step) == (TrainStatus.stopped, 4)
    config = checkpoint_of(tmp_path).config
    assert (config["step"], config["epoch"]) == (4, 1)


@pytest.mark.parametrize("model", ["cnn", "neuron"])
def test_a_nan_raises_naming_the_step_and_keeps_the_last_good_checkpoint(
    model: str, tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    spec = SPECS[model]()
    trainer = make_trainer(spec, load_dataset(spec.dataset))
    spe = steps_per_epoch(trainer)

    def diverge_after_first_checkpoint(event: TrainEvent) -> None:
        # Simulate a blow-up: poison a weight right after epoch 1's checkpoint is written.
        if event.kind is EventKind.checkpoint and event.step == spe:
            with torch.no_grad():
                if model == "cnn":
                    trainer.net.conv1.weight[0, 0, 0, 0] = math.nan
                else:
                    trainer.w[0] = math.nan

    with pytest.raises(NonFiniteLossError, match=f"loss became nan at step {spe + 1}") as info:
        run_loop(
            trainer,
            seed=spec.seed,
            epochs=2,
            on_event=diverge_after_first_checkpoint,
            should_stop=lambda: False,
            run_dir=tmp_path,
            device=CPU,
        )
    assert (info.value.step, info.value.name) == (spe + 1, "loss")
    kept = checkpoint_of(tmp_path)
    assert kept.config["step"] == spe
    assert all(bool(torch.isfinite(t).all()) for t in kept.weights.values())


def test_non_finite_weights_are_never_checkpointed(
    tmp_path: Path, make_trainer: Callable[..., Any]
) -> None:
    # A step can turn the weights to NaN/inf while its own loss (computed before the update)
    # is still finite; a checkpoint due right then must not overwrite the good one.
    spec = neuron_spec()
    trainer = make_trainer(spec, load_dataset(spec.dataset))
    spe = steps_per_epoch(trainer)
    bad_step = spe + 2

    seen = {"step": 0}

    def blow_up_next_step(event: TrainEvent) -> None:
        seen["step"] = event.step
        if event.kind is EventKind.metrics and event.step == bad_step - 1:
            trainer.lr = math.inf

    with pytest.raises(NonFiniteLossError, match="neuron.weight became nan") as info:
        run_loop(
            trainer,
            seed=spec.seed,
            epochs=2,
            on_event=blow_up_next_step,
            should_stop=lambda: seen["step"] == bad_step,  # stop (and save) right after it
            run_dir=tmp_path,
            device=CPU,
        )
    assert info.value.step == bad_step
    assert checkpoint_of(tmp_path).config["step"] == spe


@pytest.mark.parametrize("model", ["cnn", "neuron"])
def test_on_event_gets_the_documented_metrics(model: str, tmp_path: Path) -> None:
    events: list[TrainEvent] = []
    result = train(SPECS[model](), events.append, run_dir=tmp_path)
    total = result.total_steps
    spe = total // 2

    steps = [e for e in events if e.kind is EventKind.metrics and "loss" in e.metrics]
    assert [e.step for e in steps] == list(range(1, total + 1))
    assert all(set(e.metrics) == {"loss", "accuracy"} for e in steps)
    assert [e.epoch for e in steps] == [1] * spe + [2] * spe
    assert all(e.total_steps == total for e in events)

    vals = [e for e in events if e.kind is EventKind.metrics and "loss" not in e.metrics]
    assert [(e.step, e.epoch) for e in vals] == [(spe, 1), (total, 2)]
    assert all(set(e.metrics) == {"val_loss", "val_accuracy"} for e in vals)
    assert all(0.0 <= e.metrics["val_accuracy"] <= 1.0 for e in vals)

    saved = [e for e in events if e.kind is EventKind.checkpoint]
    assert [(e.step, e.path) for e in saved] == [
        (spe, tmp_path / "checkpoint"),
        (total, tmp_path / "checkpoint"),
    ]
    assert result.metrics["val_accuracy"] == vals[-1].metrics["val_accuracy"]
    assert result.best_metrics["val_loss"] == min(e.metrics["val_loss"] for e in vals)
