"""Every command docker-compose.yml and the Dockerfile run is a real entry point of the project.

Each ``modelkiln ...`` runs with ``--help`` through the venv's console script and has its
options parsed by the real CLI; each ``celery -A ...`` loads its app; each ``python -c`` probe
imports what it names. Then the API, Flower, migration and worker-health commands run for
real in embedded mode (SQLite store and broker, no Redis or PostgreSQL) on loopback ports, and
each health probe is seen to pass against a live process and to fail without one.
"""

from __future__ import annotations

import ast
import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tests.deploy.deployfiles import (
    deploy_environment,
    exec_form,
    healthcheck_command,
    load_compose,
    parse_dockerfile,
)

BIN = Path(sys.executable).parent  # the venv's scripts: modelkiln, celery


def project_commands() -> dict[str, list[str]]:
    """``where -> argv`` for each command the image runs, from compose and the Dockerfile."""
    compose = load_compose(deploy_environment())
    found = {}
    for name, service in compose["services"].items():
        if "build" not in service:
            continue  # redis and postgres run their upstream images' own commands
        found[f"compose:{name}:command"] = service["command"]
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            assert test[0] == "CMD", f"{name}: use an exec-form (CMD) health check"
            found[f"compose:{name}:healthcheck"] = test[1:]
    runtime = parse_dockerfile()[1][-1]
    for instruction in runtime.all("CMD") + runtime.all("ENTRYPOINT"):
        found[f"Dockerfile:{instruction.keyword}"] = exec_form(instruction.args)
    for instruction in runtime.all("HEALTHCHECK"):
        found["Dockerfile:HEALTHCHECK"] = healthcheck_command(instruction.args)
    return found


COMMANDS = project_commands()


def embedded_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process in embedded mode with all state under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKILN_")}
    env["MODELKILN_HOME"] = str(tmp_path / "home")
    return env


def run(argv: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> Any:
    # cwd=tmp_path: Settings also reads ./.env, and a developer's .env must not leak in.
    return subprocess.run(
        argv,
        cwd=tmp_path,
        env={**embedded_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def script(argv: list[str]) -> list[str]:
    """``argv`` with its program resolved to this venv's console script or interpreter."""
    program = {"python": sys.executable}.get(argv[0], str(BIN / argv[0]))
    assert Path(program).exists(), f"{argv[0]} is not installed in {BIN}"
    return [program, *argv[1:]]


def test_the_image_runs_each_role() -> None:
    commands = [argv[:2] for argv in COMMANDS.values()]
    for role in (["modelkiln", "api"], ["modelkiln", "worker"], ["modelkiln", "migrate"]):
        assert role in commands
    assert ["celery", "-A"] in commands  # flower


@pytest.mark.parametrize("where", sorted(COMMANDS))
def test_command_is_a_real_entry_point(where: str, tmp_path: Path) -> None:
    argv = COMMANDS[where]
    if argv[0] == "modelkiln":
        check_modelkiln(argv, tmp_path)
    elif argv[0] == "celery":
        check_celery(argv, tmp_path)
    elif argv[:2] == ["python", "-c"]:
        check_python_probe(argv[2])
    else:
        pytest.fail(f"{where}: {argv[0]!r} is not an entry point of the project")


def check_modelkiln(argv: list[str], tmp_path: Path) -> None:
    done = run([*script(argv), "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    parse_modelkiln(argv)  # --help stops before values are checked


def parse_modelkiln(argv: list[str]) -> None:
    """Parse ``argv`` with the real CLI, as running it would, without running the command."""
    from app.cli import cli

    assert argv[0] == "modelkiln", argv
    group = typer.main.get_command(cli)  # a (Typer-vendored) click Group
    with group.make_context("modelkiln", [argv[1]]) as parent:
        command = group.get_command(parent, argv[1])  # type: ignore[attr-defined]
        assert command is not None, f"no command modelkiln {argv[1]}"
        command.make_context(argv[1], argv[2:], parent=parent)  # raises on a bad option/value


def check_celery(argv: list[str], tmp_path: Path) -> None:
    done = run([*script(argv), "--help"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage:" in done.stdout
    app_path = argv[argv.index("-A") + 1]
    from celery import Celery
    from celery.app.utils import find_app

    app = find_app(app_path)
    assert isinstance(app, Celery) and app.main == "modelkiln"
    assert {q.name for q in app.conf.task_queues} == {"cpu", "gpu"}
    if "flower" in argv:  # what follows `flower` goes to Flower's own option parser
        from flower.options import options

        for word in argv[argv.index("flower") + 1 :]:
            name = word.removeprefix("--").split("=", 1)[0]
            assert name in options, f"flower has no option --{name}"


def check_python_probe(code: str) -> None:
    tree = ast.parse(code)  # a syntax error fails here
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert imports, "a probe that imports nothing checks nothing"
    for node in imports:
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        else:
            assert node.module is not None
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


# --- the commands, running ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_port(text: str, old: int, new: int) -> str:
    assert text.count(f":{old}/") == 1, text
    return text.replace(f":{old}/", f":{new}/")


def probe(code: str, tmp_path: Path) -> int:
    return run([sys.executable, "-c", code], tmp_path, timeout=30).returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start a command in embedded mode; it is terminated (by its own pid) after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"process-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            script(argv), cwd=tmp_path, env=embedded_env(tmp_path), stdout=log, stderr=log
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(code: str, proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited: " + "".join(
            p.read_text(errors="replace") for p in tmp_path.glob("process-*.log")
        )
        if probe(code, tmp_path) == 0:
            return
        time.sleep(0.5)
    pytest.fail("the health check never passed")


def replace_option(argv: list[str], name: str, value: str) -> list[str]:
    out = list(argv)
    for i, word in enumerate(out):
        if word == name:
            out[i + 1] = value
        elif word.startswith(name + "="):
            out[i] = f"{name}={value}"
    assert out != argv or value in argv, f"{name} not in {argv}"
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["compose:api:healthcheck", "Dockerfile:HEALTHCHECK"])
def test_api_health_check_passes_against_the_compose_api_command(
    where: str, serve: Any, tmp_path: Path
) -> None:
    port = free_port()
    code = with_port(COMMANDS[where][2], 8000, port)
    assert probe(code, tmp_path) != 0, "the probe passes with nothing listening"
    api = replace_option(COMMANDS["compose:api:command"], "--host", "127.0.0.1")
    proc = serve(replace_option(api, "--port", str(port)))
    wait_healthy(code, proc, tmp_path)


@pytest.mark.timeout(120)
def test_flower_health_check_passes_against_the_compose_flower_command(
    serve: Any, tmp_path: Path
) -> None:
    port = free_port()
    code = with_port(COMMANDS["compose:flower:healthcheck"][2], 5555, port)
    assert probe(code, tmp_path) != 0, "the probe passes with nothing listening"
    flower = replace_option(COMMANDS["compose:flower:command"], "--port", str(port))
    proc = serve([*flower, "--address=127.0.0.1"])
    wait_healthy(code, proc, tmp_path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["compose:worker:healthcheck", "compose:worker-cpu:healthcheck"])
def test_worker_health_check_tells_a_reachable_broker_from_a_dead_one(
    where: str, tmp_path: Path
) -> None:
    argv = script(COMMANDS[where])
    assert run(argv, tmp_path).returncode == 0  # the embedded broker answers
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    assert run(argv, tmp_path, MODELKILN_BROKER_URL=dead).returncode != 0


@pytest.mark.timeout(120)
def test_migrate_command_brings_a_new_store_up_to_date(tmp_path: Path) -> None:
    done = run(script(COMMANDS["compose:migrate:command"]), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "modelkiln.db").is_file()
