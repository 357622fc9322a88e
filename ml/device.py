"""Picking the device, and the CPU settings that matter for small nets."""

from __future__ import annotations

import torch

from ml.errors import DeviceError
from ml.specs import DeviceChoice


def resolve_device(choice: DeviceChoice | str) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU."""
    choice = DeviceChoice(choice)
    if choice is DeviceChoice.cuda or (choice is DeviceChoice.auto and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was asked for, but this worker has no CUDA device")
        return torch.device("cuda", torch.cuda.current_device())
    # Denormal floats make tiny-weight nets crawl on x86: one digits CNN run took 188 s
    # without this and 8 s with it, same accuracy (see shared/NOTES.md).
    torch.set_flush_denormal(True)
    return torch.device("cpu")
