"""``ml.train``: one entry point that trains any model kind from a validated spec."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import TypeAdapter

from ml.datasets import Dataset, load_dataset
from ml.device import resolve_device
from ml.events import OnEvent, ShouldStop, TrainResult, never_stop, noop_event
from ml.loop import Trainer, run_loop
from ml.specs import AnySpec, ModelKind, TrainSpec

SPEC_ADAPTER: TypeAdapter[AnySpec] = TypeAdapter(TrainSpec)


def parse_spec(data: object) -> AnySpec:
    """Validate a dict (or JSON-like object) into a spec; raises pydantic.ValidationError."""
    return SPEC_ADAPTER.validate_python(data)


def train(
    spec: AnySpec,
    on_event: OnEvent = noop_event,
    should_stop: ShouldStop = never_stop,
    run_dir: Path | str = "runs/run",
    *,
    resume: bool = False,
    uploads_dir: Path | None = None,
    data_dir: Path | None = None,
) -> TrainResult:
    """Train the model ``spec`` describes, writing checkpoints and images under ``run_dir``.

    ``resume=True`` continues from ``run_dir/checkpoint`` if there is one. Raises
    :class:`~ml.errors.MLError` subclasses for bad data, devices or numerics.
    """
    device = resolve_device(spec.device)
    dataset = load_dataset(spec.dataset, uploads_dir=uploads_dir, data_dir=data_dir)
    torch.manual_seed(spec.seed)  # weight init; batch order and noise have their own seeds
    trainer = build_trainer(spec, dataset, device)
    return run_loop(
        trainer,
        seed=spec.seed,
        epochs=spec.hyperparams.epochs,
        on_event=on_event,
        should_stop=should_stop,
        run_dir=Path(run_dir),
        device=device,
        resume=resume,
    )


def build_trainer(spec: AnySpec, dataset: Dataset, device: torch.device) -> Trainer:
    """The :class:`~ml.loop.Trainer` for ``spec.model`` (imported lazily: each is torch-heavy)."""
    if spec.model is ModelKind.neuron:
        from ml.neuron import NeuronTrainer

        return NeuronTrainer(spec, dataset, device)
    if spec.model is ModelKind.cnn:
        from ml.cnn import CNNTrainer

        return CNNTrainer(spec, dataset, device)
    from ml.gan import GANTrainer

    return GANTrainer(spec, dataset, device)
