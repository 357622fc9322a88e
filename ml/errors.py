"""Errors `ml` raises on purpose. Each carries a message meant for the person who sent the job."""

from __future__ import annotations


class MLError(Exception):
    """Base class: anything here is the user's input or the run's numerics, not a bug."""


class DatasetError(MLError):
    """A dataset is unknown, malformed, too large or unsuited to the model."""


class NonFiniteLossError(MLError):
    """A loss became NaN or infinite; training ended, the last good checkpoint is kept."""

    def __init__(self, step: int, name: str, value: float) -> None:
        super().__init__(
            f"{name} became {value} at step {step}; training stopped, the last good "
            "checkpoint is kept (try a lower lr)"
        )
        self.step = step
        self.name = name
        self.value = value


class CheckpointError(MLError):
    """A checkpoint is missing, unreadable or of another model kind."""


class DeviceError(MLError):
    """The requested device is not available here (e.g. device=cuda on a machine with no GPU)."""
