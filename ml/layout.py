"""Where a run keeps its checkpoint, and the step it holds — without loading PyTorch.

The API and the worker find checkpoints through this module; :mod:`ml.checkpoint` writes
them with the same names. It imports nothing heavy, so callers that never train (the API
process, the worker before its first job) stay light.
"""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINT_DIR = "checkpoint"  # inside a run directory
WEIGHTS = "weights.safetensors"
STATE = "state.safetensors"
CONFIG = "config.json"  # written last, renamed into place with the rest


def checkpoint_dir(run_dir: Path) -> Path:
    """The checkpoint directory of the run in ``run_dir``."""
    return Path(run_dir) / CHECKPOINT_DIR


def saved_step(directory: Path) -> int | None:
    """The step recorded in the checkpoint at ``directory``; None if there is none readable."""
    try:
        config = json.loads((Path(directory) / CONFIG).read_text())
        return int(config.get("step", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
