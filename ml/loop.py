"""The training loop every model kind shares: batches, events, stopping, checkpoints, resume.

A model kind supplies a :class:`Trainer` (what one step does, what the end of an epoch does,
which tensors make up its state); :func:`run_loop` drives it. Keeping the driving here means
the promises the service relies on hold for every model alike:

* ``on_event`` gets one ``metrics`` event per step, plus one per epoch for validation;
* ``should_stop()`` is checked after every step; when it says stop, a checkpoint of that
  step is written and the loop returns ``stopped``;
* a NaN or infinite metric (or weight, when a checkpoint is due) raises
  :class:`~ml.errors.NonFiniteLossError` naming the step, and the last good checkpoint (end
  of the previous epoch) is left as it was;
* the batch order of epoch ``e`` depends only on ``(seed, e)``, and every RNG the step uses
  is saved in the checkpoint, so stopping after step ``s`` and resuming gives the very same
  weights as never stopping (on CPU; cuDNN may differ in the last bits on a GPU).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Protocol

import torch

from ml import checkpoint as ckpt_io
from ml.errors import NonFiniteLossError
from ml.events import EventKind, OnEvent, ShouldStop, TrainEvent, TrainResult, TrainStatus
from ml.layout import CHECKPOINT_DIR

CHECKPOINT_EVERY_S = 60.0  # also checkpoint mid-epoch when an epoch is long


class Trainer(Protocol):
    """What a model kind implements for :func:`run_loop`."""

    n_train: int  # examples in the training split
    examples_per_step: int  # indices handed to one train_step
    drop_last: bool  # drop an epoch's last, short batch (GANs do; classifiers don't)

    def train_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step on the training rows ``batch`` (indices, on the device).

        Returns 0-d metric tensors; they are read back once per step, all together.
        """
        ...

    def end_epoch(self, epoch: int, run_dir: Path) -> tuple[dict[str, float], list[Path]]:
        """Validation metrics for the epoch and any files written (e.g. a progress grid)."""
        ...

    def weights(self) -> dict[str, torch.Tensor]:
        """Every tensor needed to use the trained model (sample or predict)."""
        ...

    def train_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Optimizer and RNG tensors plus their JSON side, needed only to resume."""
        ...

    def load(self, ckpt: ckpt_io.Checkpoint) -> None:
        """Restore weights and train state from ``ckpt``."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON that rebuilds the model without the original request (spec, shapes, norms)."""
        ...


def steps_per_epoch(trainer: Trainer) -> int:
    if trainer.drop_last:
        return max(1, trainer.n_train // trainer.examples_per_step)
    return math.ceil(trainer.n_train / trainer.examples_per_step)


def epoch_order(seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """The shuffled row order of ``epoch``: a function of ``(seed, epoch)`` alone."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g).to(device)


def run_loop(
    trainer: Trainer,
    *,
    seed: int,
    epochs: int,
    on_event: OnEvent,
    should_stop: ShouldStop,
    run_dir: Path,
    device: torch.device,
    resume: bool = False,
) -> TrainResult:
    """Train ``trainer`` for ``epochs`` epochs (or up to where ``should_stop`` says)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    spe = steps_per_epoch(trainer)
    total = spe * epochs
    step = 0
    best: dict[str, float] = {}
    last: dict[str, float] = {}
    if resume and ckpt_io.exists(ckpt_dir):
        saved = ckpt_io.load(ckpt_dir)
        trainer.load(saved)
        _restore_global_rng(saved.state, device)
        step = int(saved.config["step"])
        best = dict(saved.config.get("best_metrics", {}))
        last = dict(saved.config.get("metrics", {}))

    def save() -> None:
        weights = trainer.weights()
        for name, tensor in weights.items():  # never overwrite a good checkpoint with NaNs
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteLossError(step, name, float("nan"))
        tensors, meta = trainer.train_state()
        tensors.update(_global_rng(device))
        config = {
            **trainer.config(),
            "step": step,
            "epoch": epoch_of(step),
            "total_steps": total,
            "steps_per_epoch": spe,
            "train_state": meta,
            "metrics": last,
            "best_metrics": best,
        }
        ckpt_io.save(ckpt_dir, ckpt_io.Checkpoint(config, weights, tensors))
        on_event(TrainEvent(EventKind.checkpoint, step, epoch_of(step), total, path=ckpt_dir))

    def epoch_of(s: int) -> int:
        return max(1, math.ceil(s / spe))

    def record(metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(step, name, value)
            last[name] = value
            better = max if "acc" in name else min
            best[name] = better(best.get(name, value), value)

    def result(status: TrainStatus) -> TrainResult:
        return TrainResult(
            status, step, epoch_of(step), total, dict(last), dict(best), ckpt_dir, str(device)
        )

    last_save = time.monotonic()
    first_epoch = step // spe + 1
    for epoch in range(first_epoch, epochs + 1):
        order = epoch_order(seed, epoch, trainer.n_train, device)
        start_in_epoch = step - (epoch - 1) * spe
        for i in range(start_in_epoch, spe):
            batch = order[i * trainer.examples_per_step : (i + 1) * trainer.examples_per_step]
            out = trainer.train_step(batch)
            step += 1
            values = torch.stack([v.detach().float() for v in out.values()]).tolist()
            metrics = dict(zip(out.keys(), values, strict=True))
            record(metrics)
            on_event(TrainEvent(EventKind.metrics, step, epoch, total, metrics))
            if i == spe - 1:
                break  # the epoch's end (below) checkpoints and checks should_stop
            if should_stop():
                save()
                return result(TrainStatus.stopped)
            if time.monotonic() - last_save > CHECKPOINT_EVERY_S:
                save()
                last_save = time.monotonic()
        val, files = trainer.end_epoch(epoch, run_dir)
        if val:
            record(val)
            on_event(TrainEvent(EventKind.metrics, step, epoch, total, dict(val)))
        for path in files:
            on_event(TrainEvent(EventKind.progress_image, step, epoch, total, path=path))
        save()
        last_save = time.monotonic()
        if step < total and should_stop():
            return result(TrainStatus.stopped)
    return result(TrainStatus.completed)


def _global_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states a step may use (dropout draws from them)."""
    states = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_global_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng.cpu" in state:
        torch.set_rng_state(state["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in state:
        torch.cuda.set_rng_state(state["rng.cuda"], device)
