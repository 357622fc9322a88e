"""``bench/airgap``: the wheels it fetches must cover what the service needs beyond what a
CUDA image's Python already has (the packages its requirements file names as present)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "bench" / "airgap" / "requirements.txt"
# What the header of requirements.txt says such an image already has.
IN_THE_IMAGE = {
    "torch",
    "numpy",
    "scikit-learn",
    "pillow",
    "safetensors",
    "httpx",
    "typer",
    "rich",
    "prometheus-client",
}


def _pinned() -> dict[str, Requirement]:
    lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(r.name): r for r in reqs}


def _project_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(d) for d in project["dependencies"]]


def test_every_dependency_is_fetched_or_in_the_image_and_the_pin_meets_its_range() -> None:
    pinned = _pinned()
    for dep in _project_dependencies():
        name = canonicalize_name(dep.name)
        if name in IN_THE_IMAGE:
            continue
        assert name in pinned, f"{dep.name} is neither fetched nor in the image"
        (version,) = (s.version for s in pinned[name].specifier if s.operator == "==")
        assert dep.specifier.contains(version), f"{name}=={version} is outside {dep}"
        assert dep.extras <= pinned[name].extras, f"{name}: extras {dep.extras} not fetched"


def test_the_image_list_is_the_one_the_requirements_file_states() -> None:
    header = " ".join(
        line.lstrip("# ")
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    )
    stated = re.search(r"already has (.*?) \(", header)
    assert stated is not None
    names = re.split(r",\s*|\s+and\s+", stated.group(1))
    assert {canonicalize_name(n) for n in names} == {canonicalize_name(n) for n in IN_THE_IMAGE}
