"""ModelKiln's models: a sigmoid neuron, a CNN and a GAN, in plain PyTorch.

Three verbs::

    result = ml.train(spec, on_event, should_stop, run_dir)   # -> TrainResult
    images = ml.sample(checkpoint_dir, n=64, seed=7)          # GAN: np.ndarray of samples
    probs  = ml.predict(checkpoint_dir, inputs)               # neuron/CNN: class probabilities

``ml.specs`` (the hyperparameter models) imports without torch; everything else is loaded
on first use, so the API can validate requests without paying for PyTorch at import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_model", "parse_spec", "predict", "sample", "train"]


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("train", "parse_spec"):
        return getattr(importlib.import_module("ml.training"), name)
    if name in ("sample", "predict", "load_model"):
        return getattr(importlib.import_module("ml.inference"), name)
    raise AttributeError(f"module 'ml' has no attribute {name!r}")
