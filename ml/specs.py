"""Training specifications: the one source of truth shared by `ml`, the API and the worker.

A spec is a discriminated union on ``model``. Each member carries the hyperparameters of
its model kind, every field bounded, documented and with an example, so that the API's
Swagger page shows one form per model and a bad value is a 422, not a crash mid-training.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelKind(StrEnum):
    neuron = "neuron"
    cnn = "cnn"
    gan = "gan"


class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class LatentDist(StrEnum):
    normal = "normal"
    uniform = "uniform"


class GLoss(StrEnum):
    non_saturating = "non_saturating"
    minimax = "minimax"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRef(_Strict):
    """A built-in dataset by ``name`` or an uploaded one by ``id`` (exactly one of them)."""

    name: str | None = Field(
        default=None,
        description="Built-in dataset: digits, breast_cancer, moons, blobs, ring8, grid25, "
        "mnist, fashion_mnist.",
        examples=["digits"],
        max_length=64,
    )
    id: str | None = Field(
        default=None,
        description="Id of an uploaded dataset (POST /v1/datasets).",
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetRef:
        if (self.name is None) == (self.id is None):
            raise ValueError("give exactly one of 'name' (built-in) or 'id' (uploaded)")
        return self

    @property
    def key(self) -> str:
        """A short label: the built-in name or ``upload:<id>``."""
        return self.name if self.name is not None else f"upload:{self.id}"


class _Common(_Strict):
    epochs: int = Field(ge=1, le=1000, description="Passes over the training split.")
    batch_size: int = Field(ge=1, le=8192, description="Examples per optimisation step.")
    lr: float = Field(gt=0, le=10, description="Learning rate.")


class NeuronHyperparams(_Common):
    """One sigmoid neuron trained by explicit gradient descent on the mean squared error."""

    epochs: int = Field(default=100, ge=1, le=1000, examples=[100])
    batch_size: int = Field(default=64, ge=1, le=8192, examples=[64])
    lr: float = Field(default=0.5, gt=0, le=10, examples=[0.5])


class CNNHyperparams(_Common):
    """Two convolution layers and a linear head, trained with Adam on cross-entropy."""

    epochs: int = Field(default=15, ge=1, le=1000, examples=[15])
    batch_size: int = Field(default=64, ge=1, le=8192, examples=[64])
    lr: float = Field(default=2e-3, gt=0, le=10, examples=[0.002])
    channels: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Channels of the first conv layer; the second has twice as many.",
        examples=[32],
    )
    dropout: float = Field(default=0.25, ge=0, lt=1, description="Dropout before the head.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="Adam weight decay.")


class GANHyperparams(_Common):
    """A generator and a discriminator (MLPs) playing the game of Goodfellow et al. (2014)."""

    epochs: int = Field(default=60, ge=1, le=5000, examples=[60])
    batch_size: int = Field(default=64, ge=2, le=8192, examples=[64])
    lr: float = Field(default=1e-3, gt=0, le=1, examples=[0.001])
    latent_dim: int = Field(default=32, ge=1, le=512, description="Size of the noise z.")
    latent_dist: LatentDist = Field(
        default=LatentDist.normal, description="z ~ N(0, 1) (normal) or z ~ U(-1, 1) (uniform)."
    )
    g_loss: GLoss = Field(
        default=GLoss.non_saturating,
        description="non_saturating: G maximises E[log D(G(z))]; minimax: G minimises "
        "E[log(1 - D(G(z)))] as in the original paper.",
    )
    d_steps: int = Field(default=1, ge=1, le=10, description="D updates per G update.")
    hidden: int = Field(default=256, ge=8, le=2048, description="Width of the hidden layers.")
    beta1: float = Field(default=0.5, ge=0, lt=1, description="Adam beta1 for both nets.")
    pack: int = Field(
        default=1,
        ge=1,
        le=8,
        description="PacGAN packing (Lin et al. 2018): D judges this many samples at once.",
    )
    spectral_norm: bool = Field(
        default=False, description="Spectral normalisation on D (Miyato et al. 2018)."
    )
    r1_gamma: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="R1 gradient penalty weight on real data (Mescheder et al. 2018); 0 = off.",
    )
    g_ema: float = Field(
        default=0.99,
        ge=0,
        lt=1,
        description="Decay of an exponential moving average of G's weights (Yazıcı et al. "
        "2019); samples, progress grids and the checkpoint's generator use the average. "
        "0 = off (samples from G itself).",
    )

    @model_validator(mode="after")
    def _pack_divides_batch(self) -> GANHyperparams:
        if self.batch_size % self.pack:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of pack ({self.pack})"
            )
        return self


class _SpecBase(_Strict):
    dataset: DatasetRef = Field(examples=[{"name": "digits"}])
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seeds init, split and noise.")
    device: DeviceChoice = Field(
        default=DeviceChoice.auto,
        description="auto: CUDA if the worker that trains the job has a GPU, else the CPU.",
    )
    name: str | None = Field(default=None, max_length=200, description="A label for people.")


class NeuronSpec(_SpecBase):
    model: Literal[ModelKind.neuron] = ModelKind.neuron
    hyperparams: NeuronHyperparams = Field(default_factory=NeuronHyperparams)


class CNNSpec(_SpecBase):
    model: Literal[ModelKind.cnn] = ModelKind.cnn
    hyperparams: CNNHyperparams = Field(default_factory=CNNHyperparams)


class GANSpec(_SpecBase):
    model: Literal[ModelKind.gan] = ModelKind.gan
    hyperparams: GANHyperparams = Field(default_factory=GANHyperparams)


TrainSpec = Annotated[NeuronSpec | CNNSpec | GANSpec, Field(discriminator="model")]
AnySpec = NeuronSpec | CNNSpec | GANSpec

HYPERPARAMS: dict[ModelKind, type[_Common]] = {
    ModelKind.neuron: NeuronHyperparams,
    ModelKind.cnn: CNNHyperparams,
    ModelKind.gan: GANHyperparams,
}

# One example per model kind that trains successfully as is (shown in Swagger, used in tests).
EXAMPLES: dict[str, dict[str, object]] = {
    "neuron": {
        "model": "neuron",
        "dataset": {"name": "breast_cancer"},
        "hyperparams": {"epochs": 100, "batch_size": 64, "lr": 0.5},
        "seed": 0,
    },
    "cnn": {
        "model": "cnn",
        "dataset": {"name": "digits"},
        "hyperparams": {"epochs": 15, "batch_size": 64, "lr": 0.002},
        "seed": 0,
    },
    "gan": {
        "model": "gan",
        "dataset": {"name": "digits"},
        "hyperparams": {"epochs": 60, "batch_size": 64, "lr": 0.001, "r1_gamma": 1.0},
        "seed": 0,
    },
}
