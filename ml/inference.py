"""Using a trained model: rebuild it from its checkpoint directory alone, then predict or sample.

``load_model`` reads ``config.json`` and ``weights.safetensors`` (not the optimizer state) and
rebuilds the network from the config — input shape, classes, channels, normalisation — with no
need for the original request or the dataset. ``predict`` takes *raw* inputs (pixels in
``[0, 1]``, tabular features in their own units), applies the recorded normalisation and
returns class probabilities; ``sample`` asks a GAN's generator for ``n`` samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ml import checkpoint as ckpt_io
from ml.checkpoint import Checkpoint
from ml.errors import CheckpointError, DatasetError, MLError
from ml.normalize import Normalization

CLASSIFIERS = ("neuron", "cnn")


class WrongModelError(MLError, ValueError):
    """The call does not apply to this kind of model (predict on a GAN, sample on a classifier)."""


class _Sampler(Protocol):
    def sample(self, n: int, seed: int) -> np.ndarray: ...


class LoadedModel:
    """A model rebuilt from a checkpoint, ready to predict (neuron, cnn) or sample (gan)."""

    def __init__(self, ckpt: Checkpoint, device: torch.device) -> None:
        self.config: dict[str, Any] = ckpt.config
        self.kind: str = str(ckpt.config.get("model"))
        self.step: int = int(ckpt.config.get("step", 0))
        self.device = device
        self._ckpt = ckpt
        self._sampler: _Sampler | None = None
        self._norm: Normalization | None = None
        self._net: torch.nn.Module | None = None
        self._neuron: tuple[torch.Tensor, torch.Tensor] | None = None
        try:
            self._build(ckpt)
        except (KeyError, TypeError, ValueError) as exc:  # a config missing or garbling a field
            raise CheckpointError(f"{self.kind} checkpoint config is incomplete: {exc!r}") from exc

    def _build(self, ckpt: Checkpoint) -> None:
        if self.kind == "neuron":
            from ml.neuron import load_weights

            w, b = load_weights(ckpt.weights, int(self.config["input_dim"]))
            self._neuron = (w.to(self.device), b.to(self.device))
        elif self.kind == "cnn":
            from ml.cnn import build_net

            net = build_net(self.config)
            ckpt_io.load_module("net", net, ckpt.weights)
            self._net = net.to(self.device).eval()
        elif self.kind != "gan":
            raise CheckpointError(f"checkpoint of unknown model kind {self.kind!r}")
        if self.kind in CLASSIFIERS:
            self._norm = Normalization.from_dict(self.config["normalization"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one raw input example the model takes."""
        if self.kind == "neuron":
            return (int(self.config["input_dim"]),)
        if self.kind == "cnn":
            return tuple(int(n) for n in self.config["input_shape"])
        raise WrongModelError("a gan takes no inputs; it samples (use sample)")

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.config.get("class_names", [])]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` (float32) for raw inputs ``(N, *input_shape)``.

        One example without the batch axis is accepted too, as are ``(N, H, W)`` images when
        the model takes one channel. The neuron's two columns are ``[P(class 0), P(class 1)]``.
        """
        if self.kind not in CLASSIFIERS:
            raise WrongModelError(
                f"predict needs a classifier (neuron or cnn); this checkpoint is a {self.kind}"
            )
        assert self._norm is not None
        batch = self._as_batch(x)
        batch = self._norm.apply(batch)
        inputs = torch.from_numpy(batch).to(self.device)
        with torch.no_grad():
            if self._neuron is not None:
                from ml.neuron import predict_proba

                probs = predict_proba(inputs, *self._neuron)
            else:
                assert self._net is not None
                probs = torch.softmax(self._net(inputs), dim=1)
        return probs.float().cpu().numpy()

    def _as_batch(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a contiguous float32 ``(N, *input_shape)`` array, or a DatasetError."""
        shape = self.input_shape
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"inputs must be an array of numbers: {exc}") from exc
        expected = f"(N, {', '.join(map(str, shape))})"
        if arr.shape == shape:
            arr = arr[None]  # one example
        elif (
            len(shape) == 3 and shape[0] == 1 and arr.shape[-2:] == shape[1:] and arr.ndim in (2, 3)
        ):
            arr = arr.reshape(-1, *shape)  # (H, W) or (N, H, W) for a one-channel model
        if arr.ndim != len(shape) + 1 or arr.shape[1:] != shape:
            raise DatasetError(
                f"this {self.kind} takes inputs of shape {expected}; got {tuple(arr.shape)}"
            )
        if len(arr) == 0:
            raise DatasetError("no inputs given")
        if not np.isfinite(arr).all():
            raise DatasetError("inputs contain NaN or infinite values")
        return np.ascontiguousarray(arr)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` samples from a GAN's generator, in raw data units; the same seed, the same."""
        if self.kind != "gan":
            raise WrongModelError(f"sample needs a gan; this checkpoint is a {self.kind}")
        if self._sampler is None:
            from ml.gan import load_generator  # torch-heavy and GAN-only: imported on first use

            self._sampler = load_generator(self._ckpt, self.device)
        return self._sampler.sample(n, seed)


def load_model(checkpoint_dir: Path | str, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model saved in ``checkpoint_dir`` (config and weights only)."""
    ckpt = ckpt_io.load(Path(checkpoint_dir), with_state=False)
    return LoadedModel(ckpt, torch.device(device))


def predict(
    checkpoint_dir: Path | str, x: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Class probabilities for raw inputs ``x`` from the classifier in ``checkpoint_dir``."""
    return load_model(checkpoint_dir, device).predict(x)


def sample(
    checkpoint_dir: Path | str, n: int = 64, seed: int = 0, device: torch.device | str = "cpu"
) -> np.ndarray:
    """``n`` samples from the GAN in ``checkpoint_dir`` (the same ``seed`` gives the same)."""
    return load_model(checkpoint_dir, device).sample(n, seed)
