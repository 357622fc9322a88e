"""Trained models loaded in the API process: an LRU cache keyed by checkpoint version.

A key is ``(job id, checkpoint step, config mtime)``: when a running job writes a newer
checkpoint the key changes and the next request loads it, so samples follow training. torch
and :mod:`ml.inference` are imported on first use, so the API starts without them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from ml import layout

if TYPE_CHECKING:
    from ml.inference import LoadedModel


def checkpoint_dir(runs_dir: Path, job_id: str) -> Path:
    return layout.checkpoint_dir(runs_dir / job_id)


def checkpoint_version(directory: Path) -> tuple[int, int] | None:
    """``(step, mtime_ns)`` of the checkpoint in ``directory``, or None if there is none."""
    try:
        mtime_ns = (directory / layout.CONFIG).stat().st_mtime_ns
    except OSError:
        return None
    step = layout.saved_step(directory)
    return None if step is None else (step, mtime_ns)


class ModelCache:
    """At most ``size`` loaded models, least recently used evicted first. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, int, int], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._models)

    def get(self, job_id: str, directory: Path) -> LoadedModel | None:
        """The model saved in ``directory`` for ``job_id``; None if there is no checkpoint yet.

        Raises :class:`ml.errors.CheckpointError` if the checkpoint cannot be read.
        """
        version = checkpoint_version(directory)
        if version is None:
            return None
        key = (job_id, *version)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
        from ml.inference import load_model  # torch: only when a model is first needed

        model = load_model(directory, "cpu")
        with self._lock:
            for old in [k for k in self._models if k[0] == job_id]:
                del self._models[old]  # an older checkpoint of the same job
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

    def forget(self, job_id: str) -> None:
        with self._lock:
            for key in [k for k in self._models if k[0] == job_id]:
                del self._models[key]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
