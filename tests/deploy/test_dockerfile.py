"""The Dockerfile, read statically (no Docker engine, no hadolint here)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.deployfiles import (
    ROOT,
    Stage,
    copy_sources,
    dockerignore_excludes,
    exec_form,
    healthcheck_command,
    parse_dockerfile,
)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile()[1]


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def build_args() -> dict[str, str]:
    """Every ARG (global or in a stage) with its default."""
    preamble, stages = parse_dockerfile()
    args = {}
    for instruction in [*preamble, *(i for s in stages for i in s.instructions)]:
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            args[name] = default
    return args


def env_of(stage: Stage) -> dict[str, str]:
    env = {}
    for instruction in stage.all("ENV"):
        for name, value in re.findall(r"(\w+)=(\S+)", instruction.args):
            env[name] = value
    return env


def test_multi_stage_build_on_a_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert all(re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim", s.base) for s in stages)
    assert build_args()["PYTHON_VERSION"] == "3.11"  # pyproject's requires-python floor


def test_runtime_stage_copies_only_the_built_venv(runtime: Stage, stages: list[Stage]) -> None:
    copies = runtime.all("COPY")
    assert [c.args for c in copies] == [f"--from={stages[0].name} /opt/venv /opt/venv"]
    assert not runtime.all("ADD")
    assert not any("pip install" in r.args for r in runtime.all("RUN"))


def test_runs_as_a_non_root_user(runtime: Stage) -> None:
    users = runtime.all("USER")
    assert users, "no USER in the final stage"
    assert users[-1].args.split(":")[0] not in ("root", "0")
    assert any(
        f"useradd --system --uid {uid}" in r.args
        for r in runtime.all("RUN")
        for uid in re.findall(r"--uid (\d+)", r.args)
    )


def test_torch_build_argument_picks_the_pytorch_index() -> None:
    args = build_args()
    assert args["TORCH_VARIANT"] == "cpu"
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'https://download.pytorch.org/whl/${TORCH_VARIANT}"' in text
    assert '"torch==${TORCH_VERSION}"' in text


def test_torch_version_is_the_one_the_tests_run_against() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", makefile, re.M)
    assert pinned, "Makefile no longer pins TORCH_SPEC"
    assert build_args()["TORCH_VERSION"] == pinned[1]


def test_healthcheck_probes_the_api_healthz(runtime: Stage) -> None:
    (check,) = runtime.all("HEALTHCHECK")
    command = healthcheck_command(check.args)
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8000/healthz" in command[2]
    assert "--interval=" in check.args and "--timeout=" in check.args


def test_default_command_is_the_api_on_the_exposed_port(runtime: Stage) -> None:
    (cmd,) = runtime.all("CMD")
    assert exec_form(cmd.args) == ["modelkiln", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert [e.args for e in runtime.all("EXPOSE")] == ["8000"]
    assert not runtime.all("ENTRYPOINT")


def test_environment_and_artifact_volume(runtime: Stage, compose: dict[str, Any]) -> None:
    env = env_of(runtime)
    assert env["PYTHONUNBUFFERED"] == "1"
    home = env["MODELKILN_HOME"]
    assert env["PATH"].startswith("/opt/venv/bin:")
    (volume,) = runtime.all("VOLUME")
    assert exec_form(volume.args) == [f"{home}/artifacts"]
    # docker-compose.yml puts the shared volume at the same place
    api = compose["services"]["api"]["environment"]
    assert api["MODELKILN_HOME"] == home
    assert api["MODELKILN_ARTIFACTS_DIR"] == f"{home}/artifacts"


def test_compose_build_args_are_declared(compose: dict[str, Any]) -> None:
    declared = build_args()
    for name, service in compose["services"].items():
        for arg in (service.get("build") or {}).get("args") or {}:
            assert arg in declared, f"{name} passes undeclared build arg {arg}"


def test_everything_copied_exists_and_reaches_the_build_context(stages: list[Stage]) -> None:
    sources = [src for s in stages for c in s.all("COPY") for src in copy_sources(c)]
    assert "pyproject.toml" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
        assert not dockerignore_excludes(src), f"COPY {src}: excluded by .dockerignore"


@pytest.mark.parametrize(
    "path", [".env", ".venv/bin/python", ".git/HEAD", ".modelkiln/broker.db", "tests/__init__.py"]
)
def test_dockerignore_keeps_local_state_and_secrets_out(path: str) -> None:
    assert dockerignore_excludes(path)


def test_dockerignore_keeps_bytecode_out_of_copied_packages() -> None:
    assert dockerignore_excludes("app/__pycache__/cli.cpython-311.pyc")
    assert not dockerignore_excludes("app/cli.py")
