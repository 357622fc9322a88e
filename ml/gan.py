"""A GAN of two MLPs, trained as the game of Goodfellow et al. (2014), for points and images.

The game
--------
The discriminator D maps a sample to a logit ``l``; ``D(x) = σ(l)`` is its belief that ``x``
is real. The generator G maps noise ``z`` (``z ~ N(0, 1)`` or ``z ~ U(−1, 1)``) to a sample.

* D **ascends** ``V(D) = E_x[log D(x)] + E_z[log(1 − D(G(z)))]``; we descend
  ``d_loss = −V(D)``.
* G either **minimises** ``E_z[log(1 − D(G(z)))]`` (``g_loss: minimax``, the paper's game)
  or **maximises** ``E_z[log D(G(z))]`` (``g_loss: non_saturating``, the default; the
  paper's §3 fix for the minimax loss's vanishing gradient when D wins early).

Both are written on D's logits, never on probabilities, so nothing under a log can round to
0: ``log σ(l) = logsigmoid(l)`` and ``log(1 − σ(l)) = log σ(−l) = logsigmoid(−l)``.

One *step* (what :func:`ml.loop.run_loop` counts) is ``d_steps`` discriminator updates, each
on its own real batch and a fresh fake batch produced with G's graph cut (the fake batch is
"detached": D's update must not move G), then one generator update.

Stabilisers (each a published fix for mode collapse, divergence or noisy samples; R1 and the
weight average are on by default, γ = 1 and decay 0.99, the others off):

* ``pack`` — PacGAN (Lin, Khetan, Fanti, Oh, NeurIPS 2018, §3): D judges ``pack`` samples
  concatenated into one input, so a generator that repeats itself is easy to spot.
* ``spectral_norm`` — Miyato et al., ICLR 2018, §2.1: every linear layer of D divided by its
  largest singular value (one power iteration per forward pass), so D is 1-Lipschitz.
* ``r1_gamma`` — Mescheder, Geiger, Nowozin, ICML 2018, eq. (9): D's loss gets
  ``γ/2 · E_x[‖∇_x l(x)‖²]`` on real data, which keeps D flat on the data manifold.
* ``g_ema`` — Yazıcı et al., ICLR 2019 ("The Unusual Effectiveness of Averaging in GAN
  Training"): samples come from an exponential moving average of G's weights, which smooths
  out the cycling of G around the game's equilibrium (sharper, steadier samples).

Data are normalised before training (:mod:`ml.normalize`): images from ``[0, 1]`` to
``[−1, 1]`` (G ends in ``tanh``), points standardised (G's output is linear). Samples are
returned in data space, the normalisation inverted.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml import checkpoint as ckpt_io
from ml.datasets import DataKind, Dataset
from ml.errors import CheckpointError, DatasetError
from ml.images import grid_png, scatter_png
from ml.normalize import Normalization
from ml.specs import GANSpec, GLoss, LatentDist

PROGRESS_DIR = "progress"
SAMPLES_PNG = "samples.png"
FIXED_N_IMAGES = 64  # an 8×8 progress grid
FIXED_N_POINTS = 1024  # a scatter needs more points to show which modes are there
REFERENCE_N = 2000  # real points drawn under the progress scatter
G_LAYERS = 4  # hidden layers of G
D_LAYERS = 4  # hidden layers of D (depth, not width, lets D resolve 25 sharp modes)
G_EMA = "G_ema"  # the averaged generator's weights in a checkpoint (hp.g_ema > 0)
# Independent streams derived from the job's seed (weight init uses torch.manual_seed(seed)).
NOISE_SEED_OFFSET = 0x6A09E667
FIXED_NOISE_SEED_OFFSET = 0x3C6EF372


# --- the losses, as pure functions of D's logits -----------------------------------------------


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``−V(D) = −(mean log D(x) + mean log(1 − D(G(z))))``, from D's logits.

    ``log D(x) = logsigmoid(l_real)``, ``log(1 − D(G(z))) = logsigmoid(−l_fake)``.
    """
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())


def g_loss(fake_logits: torch.Tensor, kind: GLoss | str) -> torch.Tensor:
    """The generator's loss (to *minimise*) from D's logits on a fake batch.

    * ``minimax``: ``mean log(1 − D(G(z))) = mean logsigmoid(−l)``;
    * ``non_saturating``: ``−mean log D(G(z)) = −mean logsigmoid(l)``.
    """
    kind = GLoss(kind)
    if kind is GLoss.minimax:
        return F.logsigmoid(-fake_logits).mean()
    return -F.logsigmoid(fake_logits).mean()


def value_fn(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``V(D, G)`` itself (what D ascends): ``−d_loss``."""
    return -d_loss(real_logits, fake_logits)


def r1_penalty(real_logits: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """``E_x[‖∇_x l(x)‖²]`` over the batch (Mescheder et al. 2018, eq. 9, without γ/2).

    ``real_input`` must have ``requires_grad``; the graph is kept so D's update sees it.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_input, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()


def draw_noise(
    n: int, dim: int, dist: LatentDist | str, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(n, dim)`` noise: ``N(0, 1)`` or ``U(−1, 1)`` (``2u − 1`` with ``u ~ U[0, 1)``)."""
    if LatentDist(dist) is LatentDist.uniform:
        return torch.rand(n, dim, generator=generator, device=device) * 2.0 - 1.0
    return torch.randn(n, dim, generator=generator, device=device)


# --- the mode-coverage score for Gaussian mixtures (ring8, grid25) ------------------------------


def mode_coverage(
    samples: np.ndarray, modes: np.ndarray, std: float, min_fraction: float = 0.2
) -> tuple[int, float]:
    """``(modes covered, high-quality fraction)`` of 2-D ``samples`` from a Gaussian mixture.

    The rule (after VEEGAN, Srivastava et al. 2017 §5.1, and PacGAN, Lin et al. 2018 §5):

    * a sample is **high quality** when it lies within ``3·std`` of its nearest mode;
    * a mode is **covered** when at least ``min_fraction`` of its fair share
      (``len(samples) / len(modes)``) of the samples are high-quality samples next to it.
      With the default 0.2 and 2,500 samples on grid25 that is ≥ 20 samples, PacGAN's
      threshold (each mode's fair share is 100).
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(modes, dtype=np.float64).reshape(-1, 2)
    if len(x) == 0:
        return 0, 0.0
    dist = np.linalg.norm(x[:, None, :] - m[None, :, :], axis=2)  # (n, modes)
    nearest = dist.argmin(axis=1)
    good = dist[np.arange(len(x)), nearest] <= 3.0 * std
    counts = np.bincount(nearest[good], minlength=len(m))
    need = min_fraction * len(x) / len(m)
    return int((counts >= need).sum()), float(good.mean())


# --- the networks ------------------------------------------------------------------------------


def _mlp(
    sizes: list[int], act: type[nn.Module], out_act: nn.Module | None, sn: bool = False
) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``act`` between them and ``out_act`` after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin: nn.Module = nn.Linear(a, b)
        if sn:  # Miyato et al. 2018: W / σ(W), σ by one power iteration per forward pass
            lin = nn.utils.parametrizations.spectral_norm(lin)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(act() if act is nn.ReLU else nn.LeakyReLU(0.2))
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def build_generator(latent_dim: int, hidden: int, out_dim: int, tanh: bool) -> nn.Sequential:
    """``z (B, latent_dim) → (B, out_dim)``: ``G_LAYERS`` ReLU layers, ``tanh`` for images."""
    sizes = [latent_dim] + [hidden] * G_LAYERS + [out_dim]
    return _mlp(sizes, nn.ReLU, nn.Tanh() if tanh else None)


def build_discriminator(in_dim: int, hidden: int, pack: int, sn: bool) -> nn.Sequential:
    """``(B/pack, pack·in_dim) → (B/pack, 1)`` logits: ``D_LAYERS`` LeakyReLU(0.2) layers."""
    sizes = [in_dim * pack] + [hidden] * D_LAYERS + [1]
    return _mlp(sizes, nn.LeakyReLU, None, sn=sn)


def _pack(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018, §3): ``(B, D) → (B/pack, pack·D)``, consecutive rows joined."""
    return x.reshape(x.shape[0] // pack, pack * x.shape[1])


# --- the trainer -------------------------------------------------------------------------------


class GANTrainer:
    """The :class:`ml.loop.Trainer` for a GAN: ``d_steps`` D updates, then one G update."""

    drop_last = True

    def __init__(self, spec: GANSpec, dataset: Dataset, device: torch.device) -> None:
        if dataset.kind not in (DataKind.image, DataKind.points, DataKind.tabular):
            raise DatasetError(f"a GAN cannot train on {dataset.kind} data")
        hp = spec.hyperparams
        if len(dataset.x_train) < hp.batch_size * hp.d_steps:
            raise DatasetError(
                f"dataset {dataset.name!r} has {len(dataset.x_train)} training rows, fewer "
                f"than one step needs (batch_size·d_steps = {hp.batch_size * hp.d_steps})"
            )
        self.spec = spec
        self.hp = hp
        self.dataset = dataset
        self.device = device
        self.kind = dataset.kind
        self.sample_shape = tuple(int(s) for s in dataset.sample_shape)
        self.is_image = dataset.kind is DataKind.image
        # Small data stay resident on the device: a step indexes this tensor, no DataLoader.
        self.norm = fit_normalization(dataset.x_train, self.is_image)
        x = self.norm.apply(dataset.x_train).reshape(len(dataset.x_train), -1)  # (N, D)
        self.x = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
        self.data_dim = int(self.x.shape[1])
        self.n_train = len(self.x)
        self.examples_per_step = hp.batch_size * hp.d_steps
        self.latent_dim = hp.latent_dim
        self.latent_dist = LatentDist(hp.latent_dist)

        self.G = build_generator(hp.latent_dim, hp.hidden, self.data_dim, self.is_image).to(device)
        # The averaged generator (hp.g_ema > 0): what samples and checkpoints show.
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if hp.g_ema > 0 else None
        self.g_updates = 0  # G steps so far: ramps the average's decay up (see update_ema)
        self.D = build_discriminator(self.data_dim, hp.hidden, hp.pack, hp.spectral_norm).to(device)
        betas = (hp.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=hp.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=hp.lr, betas=betas)

        self.noise_gen = torch.Generator(device=device).manual_seed(
            (spec.seed + NOISE_SEED_OFFSET) % 2**63
        )
        self.fixed_n = FIXED_N_IMAGES if self.is_image else FIXED_N_POINTS
        self.fixed_seed = (spec.seed + FIXED_NOISE_SEED_OFFSET) % 2**63
        self.fixed_z = fixed_noise(self.fixed_n, hp.latent_dim, self.latent_dist, self.fixed_seed)
        self.fixed_z = self.fixed_z.to(device)
        ref = dataset.x_train[: min(REFERENCE_N, len(dataset.x_train))]
        self.reference = (
            ref.reshape(len(ref), -1)[:, :2] if self.kind is not DataKind.image else None
        )

    # -- one step ------------------------------------------------------------------------------

    def noise(self, n: int) -> torch.Tensor:
        """``(n, latent_dim)`` training noise from the trainer's own (checkpointed) generator."""
        return draw_noise(n, self.latent_dim, self.latent_dist, self.noise_gen, self.device)

    def d_step(self, real: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of D: descend ``−V(D)`` (+ R1) on ``real (B, D)`` and ``G(z)`` detached."""
        pack = self.hp.pack
        with torch.no_grad():  # the fake batch is detached: this update must not reach G
            fake = self.G(z)  # (B, D)
        real_in = _pack(real, pack)  # (B/pack, pack·D)
        if self.hp.r1_gamma > 0:
            real_in = real_in.detach().requires_grad_(True)
        real_logits = self.D(real_in).squeeze(1)  # (B/pack,)
        fake_logits = self.D(_pack(fake, pack)).squeeze(1)  # (B/pack,)
        loss = d_loss(real_logits, fake_logits)
        total = loss
        if self.hp.r1_gamma > 0:  # Mescheder et al. 2018, eq. (9): γ/2 · E‖∇_x D(x)‖²
            total = loss + 0.5 * self.hp.r1_gamma * r1_penalty(real_logits, real_in)
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        return {
            "d_loss": loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }

    def g_step(self, z: torch.Tensor) -> torch.Tensor:
        """One update of G: descend ``g_loss`` through a frozen D."""
        self.D.requires_grad_(False)  # gradients flow through D to G, none are kept on D
        try:
            fake_logits = self.D(_pack(self.G(z), self.hp.pack)).squeeze(1)
            loss = g_loss(fake_logits, self.hp.g_loss)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        return loss.detach()

    def train_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """``d_steps`` D updates (each on its own ``batch_size`` real rows), then one G update.

        ``batch`` holds ``batch_size · d_steps`` row indices (``examples_per_step``).
        """
        b = self.hp.batch_size
        real_all = self.x[batch]  # (B·d_steps, D)
        # Phase 1: update D d_steps times.
        d_metrics: list[dict[str, torch.Tensor]] = []
        for k in range(self.hp.d_steps):
            real = real_all[k * b : (k + 1) * b]  # (B, D)
            d_metrics.append(self.d_step(real, self.noise(b)))
        # Phase 2: update G once (and its average).
        lg = self.g_step(self.noise(b))
        self.g_updates += 1
        if self.G_ema is not None:
            self.update_ema()
        out = {name: torch.stack([m[name] for m in d_metrics]).mean() for name in d_metrics[0]}
        return {
            "d_loss": out["d_loss"],
            "g_loss": lg,
            "d_real": out["d_real"],
            "d_fake": out["d_fake"],
        }

    @torch.no_grad()
    def update_ema(self) -> None:
        """``G_ema ← β·G_ema + (1 − β)·G`` (Yazıcı et al. 2019), with
        ``β = min(g_ema, (1 + t) / (10 + t))`` after ``t`` G updates: TensorFlow's
        ``ExponentialMovingAverage(num_updates=t)``, so the random initial weights fade within
        the first hundred steps instead of weighing on a short run's average."""
        assert self.G_ema is not None
        t = self.g_updates
        beta = min(self.hp.g_ema, (1 + t) / (10 + t))
        for avg, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            avg.lerp_(p, 1.0 - beta)

    @property
    def sampler(self) -> nn.Module:
        """The generator that samples are drawn from: the average when there is one."""
        return self.G_ema if self.G_ema is not None else self.G

    # -- epoch end: the progress picture ----------------------------------------------------------

    @torch.no_grad()
    def fixed_samples(self) -> np.ndarray:
        """G on the fixed noise batch, in data space (the progress grid's content)."""
        return self._to_data(self.sampler(self.fixed_z))

    def _to_data(self, out: torch.Tensor) -> np.ndarray:
        return to_data_space(out, self.norm, self.sample_shape, self.is_image)

    def end_epoch(self, epoch: int, run_dir: Path) -> tuple[dict[str, float], list[Path]]:
        """Write the fixed-noise picture to ``progress/epoch_NNNN.png`` and ``samples.png``."""
        run_dir = Path(run_dir)
        samples = self.fixed_samples()
        if self.is_image:
            png = grid_png(samples, nrow=8)
        else:
            png = scatter_png(samples[:, :2], reference=self.reference)
        folder = run_dir / PROGRESS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch_{epoch:04d}.png"
        tmp = folder / f".{path.name}.tmp"
        tmp.write_bytes(png)
        tmp.replace(path)
        latest_tmp = run_dir / f".{SAMPLES_PNG}.tmp"
        shutil.copyfile(path, latest_tmp)
        latest_tmp.replace(run_dir / SAMPLES_PNG)  # a reader never sees half a PNG
        return {}, [path]

    # -- checkpoint ------------------------------------------------------------------------------

    def weights(self) -> dict[str, torch.Tensor]:
        tensors = {**ckpt_io.module_tensors("G", self.G), **ckpt_io.module_tensors("D", self.D)}
        if self.G_ema is not None:
            tensors.update(ckpt_io.module_tensors(G_EMA, self.G_ema))
        return tensors

    def train_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tg, mg = ckpt_io.optimizer_to_tensors("opt_g", self.opt_g)
        td, md = ckpt_io.optimizer_to_tensors("opt_d", self.opt_d)
        tensors = {**tg, **td, "noise_rng": self.noise_gen.get_state()}
        return tensors, {"opt_g": mg, "opt_d": md, "g_updates": self.g_updates}

    def load(self, ckpt: ckpt_io.Checkpoint) -> None:
        if ckpt.config.get("model") != "gan":
            raise CheckpointError(f"checkpoint is a {ckpt.config.get('model')!r}, not a gan")
        ckpt_io.load_module("G", self.G, ckpt.weights)
        ckpt_io.load_module("D", self.D, ckpt.weights)
        if self.G_ema is not None:
            if any(k.startswith(G_EMA + ".") for k in ckpt.weights):
                ckpt_io.load_module(G_EMA, self.G_ema, ckpt.weights)
            else:  # a checkpoint without an average (older, or g_ema was 0): it starts at G
                self.G_ema.load_state_dict(self.G.state_dict())
        meta = ckpt.config.get("train_state", {})
        self.g_updates = int(meta.get("g_updates", 0))
        if "opt_g" in meta:
            ckpt_io.optimizer_from_tensors("opt_g", self.opt_g, ckpt.state, meta["opt_g"])
            ckpt_io.optimizer_from_tensors("opt_d", self.opt_d, ckpt.state, meta["opt_d"])
        if "noise_rng" in ckpt.state:
            self.noise_gen.set_state(ckpt.state["noise_rng"].to(torch.uint8).cpu())

    def config(self) -> dict[str, Any]:
        hp = self.hp
        return {
            "model": "gan",
            "spec": self.spec.model_dump(mode="json"),
            "dataset": self.dataset.describe(),
            "normalization": self.norm.to_dict(),
            "sample_shape": list(self.sample_shape),
            "data_kind": self.kind.value,
            "latent": {
                "dim": hp.latent_dim,
                "dist": self.latent_dist.value,
                "fixed_seed": self.fixed_seed,
                "fixed_n": self.fixed_n,
            },
            "generator": {
                "latent_dim": hp.latent_dim,
                "hidden": hp.hidden,
                "layers": G_LAYERS,
                "out_dim": self.data_dim,
                "output": "tanh" if self.is_image else "linear",
                "weights": G_EMA if self.G_ema is not None else "G",
            },
            "discriminator": {
                "in_dim": self.data_dim,
                "hidden": hp.hidden,
                "layers": D_LAYERS,
                "pack": hp.pack,
                "spectral_norm": hp.spectral_norm,
                "r1_gamma": hp.r1_gamma,
            },
        }


def fit_normalization(x_train: np.ndarray, is_image: bool) -> Normalization:
    """Images: min-max per channel onto ``[−1, 1]`` (the range of G's ``tanh``); points and
    tabular rows: standardised per feature (G's output is linear)."""
    if is_image:
        return Normalization.fit(x_train, "minmax", per="channel")
    return Normalization.fit(x_train, "standard", per="feature")


def fixed_noise(n: int, dim: int, dist: LatentDist | str, seed: int) -> torch.Tensor:
    """The progress grid's noise: a function of ``seed`` alone (drawn on the CPU, so the same
    on every device), recomputed rather than stored."""
    return draw_noise(n, dim, dist, torch.Generator().manual_seed(seed), torch.device("cpu"))


def to_data_space(
    out: torch.Tensor, norm: Normalization, sample_shape: tuple[int, ...], is_image: bool
) -> np.ndarray:
    """G's output ``(n, D)`` → data space: normalisation inverted, reshaped to the data's
    sample shape; images clipped to ``[0, 1]``."""
    x = out.detach().float().cpu().numpy()
    x = norm.invert(x.reshape((len(x), *sample_shape)))
    if is_image:
        x = np.clip(x, 0.0, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32)


# --- sampling from a checkpoint -----------------------------------------------------------------


@dataclass
class GANSampler:
    """A trained generator, ready to sample in data space."""

    generator: nn.Module
    norm: Normalization
    sample_shape: tuple[int, ...]
    is_image: bool
    latent_dim: int
    latent_dist: LatentDist
    device: torch.device
    max_batch: int = 4096

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` samples; images ``(n, C, H, W)`` in ``[0, 1]``, points ``(n, 2)``.

        The noise comes from a CPU generator seeded with ``seed``: the same seed gives the
        same samples, whatever the device.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        z = fixed_noise(n, self.latent_dim, self.latent_dist, seed)  # (n, latent_dim)
        parts = [
            to_data_space(
                self.generator(z[i : i + self.max_batch].to(self.device)),
                self.norm,
                self.sample_shape,
                self.is_image,
            )
            for i in range(0, n, self.max_batch)
        ]
        if not parts:
            return np.zeros((0, *self.sample_shape), dtype=np.float32)
        return np.concatenate(parts)


def load_generator(ckpt: ckpt_io.Checkpoint, device: torch.device) -> GANSampler:
    """Rebuild G from a GAN checkpoint's config and weights (D and optimizers are not needed)."""
    cfg = ckpt.config
    if cfg.get("model") != "gan":
        raise CheckpointError(f"checkpoint is a {cfg.get('model')!r}, not a gan")
    try:
        g = cfg["generator"]
        if int(g.get("layers", G_LAYERS)) != G_LAYERS:
            raise CheckpointError(
                f"checkpoint's generator has {g['layers']} layers, not {G_LAYERS}"
            )
        net = build_generator(
            int(g["latent_dim"]), int(g["hidden"]), int(g["out_dim"]), g["output"] == "tanh"
        )
        norm = Normalization.from_dict(cfg["normalization"])
        sampler = GANSampler(
            generator=net,
            norm=norm,
            sample_shape=tuple(int(s) for s in cfg["sample_shape"]),
            is_image=g["output"] == "tanh",
            latent_dim=int(cfg["latent"]["dim"]),
            latent_dist=LatentDist(cfg["latent"]["dist"]),
            device=torch.device(device),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint config does not describe a GAN generator: {exc}"
        ) from exc
    ckpt_io.load_module(str(cfg["generator"].get("weights", "G")), net, ckpt.weights)
    net.to(device).eval()
    return sampler
