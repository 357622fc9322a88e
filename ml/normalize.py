"""Input normalisation, fitted on the training split only and recorded in the checkpoint.

Every variant is one affine map, ``x' = (x - center) / scale``, so ``apply`` and ``invert``
are the same two lines whatever was fitted:

* ``standard`` — ``center`` = mean, ``scale`` = standard deviation: zero mean, unit variance.
  Tabular and 2-D points data use it per feature; images per channel (one channel = a single
  mean and std for the whole image) or over everything (``per="all"``).
* ``minmax`` — ``center`` = (max + min) / 2, ``scale`` = (max - min) / 2: maps the training
  range onto ``[-1, 1]``, the range of a ``tanh`` output (what a GAN's generator produces).

A constant feature (std or range 0) gets ``scale = 1`` rather than a division by zero.
``center`` and ``scale`` are kept in float64 and written to JSON as Python floats, which
round-trip exactly, so a model rebuilt from its checkpoint normalises bit for bit as the
training run did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

Method = Literal["standard", "minmax"]
Per = Literal["feature", "channel", "all"]
ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Normalization:
    """``x' = (x - center) / scale`` with ``center`` and ``scale`` broadcast over one sample."""

    method: Method
    per: Per
    center: np.ndarray  # float64, shape broadcastable to one sample: (D,), (C, 1, 1) or ()
    scale: np.ndarray  # float64, same shape as center, every entry > 0

    @classmethod
    def fit(
        cls, x: np.ndarray, method: Method = "standard", per: Per | None = None
    ) -> Normalization:
        """Fit on ``x`` (the training split): ``(N, D)`` features or ``(N, C, H, W)`` images.

        ``per`` defaults to ``"feature"`` for ``(N, D)`` and ``"channel"`` for images.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"fit needs a batch of samples, got shape {x.shape}")
        if per is None:
            per = "channel" if x.ndim == 4 else "feature"
        if per == "feature":
            axes: tuple[int, ...] = (0,)  # one value per entry of a sample: (D,) for tabular
        elif per == "channel":
            if x.ndim != 4:
                raise ValueError(f"per='channel' needs (N, C, H, W) images, got shape {x.shape}")
            axes = (0, 2, 3)  # keepdims below leaves (1, C, 1, 1) -> (C, 1, 1)
        else:
            axes = tuple(range(x.ndim))  # one number for everything
        if method == "standard":
            center = x.mean(axis=axes, keepdims=True)
            scale = x.std(axis=axes, keepdims=True)
        elif method == "minmax":
            lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
            center, scale = (hi + lo) / 2, (hi - lo) / 2
        else:
            raise ValueError(f"unknown normalisation method {method!r}")
        scale = np.where(scale > 0, scale, 1.0)
        # Drop the batch axis: (1, D) -> (D,), (1, C, 1, 1) -> (C, 1, 1), all-axes -> ().
        if per == "all":
            center, scale = center.reshape(()), scale.reshape(())
        else:
            center, scale = center[0], scale[0]
        return cls(method, per, center, scale)

    def apply(self, x: ArrayLike) -> ArrayLike:
        """Raw inputs -> normalised, same type (numpy or torch) and dtype as ``x``."""
        if isinstance(x, torch.Tensor):
            c, s = self._torch(x)
            return (x - c) / s
        return ((np.asarray(x, dtype=np.float64) - self.center) / self.scale).astype(x.dtype)

    def invert(self, x: ArrayLike) -> ArrayLike:
        """Normalised -> raw units (e.g. a generator's tanh output back to pixels)."""
        if isinstance(x, torch.Tensor):
            c, s = self._torch(x)
            return x * s + c
        return (np.asarray(x, dtype=np.float64) * self.scale + self.center).astype(x.dtype)

    def _torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return (
            torch.as_tensor(self.center, dtype=dtype, device=x.device),
            torch.as_tensor(self.scale, dtype=dtype, device=x.device),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON: ``{"method", "per", "shape", "center", "scale"}`` (flat lists of floats)."""
        return {
            "method": self.method,
            "per": self.per,
            "shape": list(self.center.shape),
            "center": self.center.ravel().tolist(),
            "scale": self.scale.ravel().tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        shape = tuple(int(n) for n in data["shape"])
        center = np.asarray(data["center"], dtype=np.float64).reshape(shape)
        scale = np.asarray(data["scale"], dtype=np.float64).reshape(shape)
        return cls(data["method"], data["per"], center, scale)
