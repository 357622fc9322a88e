"""A live embedded ModelKiln (``modelkiln serve``) in a subprocess, for CLI and browser tests.

The server gets a fresh ``MODELKILN_HOME`` and a free port, and is ready when ``/readyz`` says
its worker answers. Tests talk to it only the way users do: over HTTP and through the
``modelkiln`` command.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_TIMEOUT_S = 180.0  # a cold worker imports torch; the CI box may be slow


def modelkiln_command() -> list[str]:
    """The installed ``modelkiln`` script beside this interpreter (the real entry point)."""
    script = Path(sys.executable).parent / "modelkiln"
    if script.exists():
        return [str(script)]
    found = shutil.which("modelkiln")
    if found is None:
        raise RuntimeError("the modelkiln script is not installed: run `make install`")
    return [found]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a server and its clients: its own home, small thread pools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKILN_")}
    env.update(
        MODELKILN_HOME=str(home),
        MODELKILN_EVENT_FLUSH_INTERVAL_S="0.1",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class LiveServer:
    """``modelkiln serve`` on ``port`` with its state under ``home``."""

    home: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home.parent / f"serve-{self.port}.log"

    @property
    def env(self) -> dict[str, str]:
        return server_env(self.home, MODELKILN_URL=self.url)

    def start(self) -> LiveServer:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*modelkiln_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.home.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one below
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the API answers with its store and broker up; fails with the log's tail.

        A job submitted before the worker is up just waits in the queue, so the worker check
        of ``/readyz`` is not waited for.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"modelkiln serve exited ({self.proc.returncode}):\n{self.tail()}"
                )
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                checks = response.json().get("checks", {})
                if response.status_code == 200 or (
                    checks.get("store") == "ok" and checks.get("broker") == "ok"
                ):
                    return
                last = response.text
            except (httpx.HTTPError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"modelkiln serve not ready after {timeout}s ({last}):\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM (graceful: the worker checkpoints and re-queues), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> CliResult:
    """Run ``modelkiln ARGS`` to completion and capture what it printed."""
    proc = subprocess.run(
        [*modelkiln_command(), *args],
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
