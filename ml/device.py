"""Picking the device, and the CPU settings that matter for small nets."""

from __future__ import annotations

import os

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


def set_cpu_threads(threads: int | None = None) -> int:
    """Intra-op CPU threads for this process: ``threads``, else ``$OMP_NUM_THREADS``, else 1.

    Our nets are small, and a host runs several single-job workers: one thread per process is
    the right default. With torch's default (one per core) a digits GAN step took 158 ms
    instead of 12 ms on a busy 2-core machine, the threads fighting each other.
    """
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else 1
    torch.set_num_threads(threads)
    return threads
