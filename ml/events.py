"""What a training run tells its caller while it runs, and what it returns at the end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class EventKind(StrEnum):
    metrics = "metrics"  # one optimisation step (or an epoch's validation): numbers to plot
    checkpoint = "checkpoint"  # a checkpoint was written (path)
    progress_image = "progress_image"  # a GAN fixed-noise grid was written (path)


@dataclass(frozen=True, slots=True)
class TrainEvent:
    """One thing that happened during training.

    ``step`` counts optimisation steps from 1 (a GAN step is one generator update with its
    ``d_steps`` discriminator updates); ``epoch`` counts from 1; ``total_steps`` is the
    planned number of steps, so ``step / total_steps`` is the progress.
    """

    kind: EventKind
    step: int
    epoch: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    path: Path | None = None


OnEvent = Callable[[TrainEvent], None]
ShouldStop = Callable[[], bool]


class TrainStatus(StrEnum):
    completed = "completed"  # every planned step ran
    stopped = "stopped"  # should_stop() said so; a checkpoint was written at that step


@dataclass(frozen=True, slots=True)
class TrainResult:
    status: TrainStatus
    step: int
    epoch: int
    total_steps: int
    metrics: dict[str, float]  # the last value of each metric
    best_metrics: dict[str, float]  # the best value of each metric (min for losses, max for acc)
    checkpoint: Path  # the checkpoint directory
    device: str  # what it actually ran on, e.g. "cpu" or "cuda:0"


def noop_event(_: TrainEvent) -> None:
    """An ``on_event`` that ignores everything."""


def never_stop() -> bool:
    """A ``should_stop`` that never asks to stop."""
    return False
