"""Self-describing checkpoints: safetensors for every tensor, JSON for everything else. No pickle.

A checkpoint is a directory::

    checkpoint/
      weights.safetensors   model tensors; its metadata holds the same JSON as config.json
      state.safetensors     optimizer tensors and RNG states (what resume needs, nothing else)
      config.json           {"format": 1, "model": ..., "spec": {...}, "step", "epoch",
                             "total_steps", "normalization": {...}, "optimizers": {...}, ...}

It is written to a sibling temporary directory and renamed into place, so a reader (the API
serving samples mid-training) never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ml.errors import CheckpointError
from ml.layout import CONFIG, STATE, WEIGHTS

FORMAT = 1


@dataclass
class Checkpoint:
    """What a checkpoint holds, in memory."""

    config: dict[str, Any]  # JSON-serialisable: spec, step, epoch, normalization, ...
    weights: dict[str, torch.Tensor]  # "<module>.<param>" -> tensor
    state: dict[str, torch.Tensor]  # optimizer and RNG tensors, for resume only


def save(directory: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``directory`` atomically (rename of a finished temporary directory)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    config = {"format": FORMAT, **ckpt.config}
    text = json.dumps(config, sort_keys=True)
    save_file(_contiguous_cpu(ckpt.weights), tmp / WEIGHTS, metadata={"modelkiln": text})
    save_file(_contiguous_cpu(ckpt.state), tmp / STATE)
    (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    old = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}.old")
    if directory.exists():
        os.replace(directory, old)  # two renames: the window with no checkpoint is tiny
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def load(directory: Path, *, with_state: bool = True) -> Checkpoint:
    """Read a checkpoint directory; ``with_state=False`` skips the optimizer/RNG file."""
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG).read_text())
        weights = load_file(directory / WEIGHTS)
        state = load_file(directory / STATE) if with_state else {}
    except FileNotFoundError as exc:
        raise CheckpointError(f"no checkpoint at {directory}") from exc
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a bare Exception
        raise CheckpointError(f"unreadable checkpoint at {directory}: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"unreadable checkpoint at {directory}: config.json is no object")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint format {config.get('format')!r} is not {FORMAT}")
    return Checkpoint(config=config, weights=weights, state=state)


def exists(directory: Path) -> bool:
    return (Path(directory) / CONFIG).is_file()


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every key prefixed ``"<prefix>."``."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load the ``"<prefix>."`` keys of ``tensors`` into ``module`` (strict)."""
    own = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint does not fit the {prefix} network: {exc}") from exc


def optimizer_to_tensors(
    prefix: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into tensors (for safetensors) and JSON (param groups)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{prefix}.{pid}.{key}"] = t
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(
    prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: rebuild the state_dict and load it."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        pid, name = key[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = []
    for group in meta["param_groups"]:
        g = dict(group)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _contiguous_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
