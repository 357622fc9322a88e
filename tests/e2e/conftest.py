"""Real parts for the end-to-end tests: Redis, a fresh PostgreSQL database, worker and API
processes started with the ``modelkiln`` command line.

Redis db 5 is flushed at the start; every run creates its own database
``modelkiln_e2e_<random>`` and drops it afterwards. Under ``CI=true`` a missing Redis or
PostgreSQL fails the tests (never a skip); elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from app.client import ModelKilnClient
from tests.e2e.flows import LATENCIES

REDIS_URL = os.environ.get("MODELKILN_E2E_REDIS_URL", "redis://127.0.0.1:6379/5")
PG_ADMIN_DSN = os.environ.get(
    "MODELKILN_E2E_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({exc})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true needs it: start it (see .ci/run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.flushdb()
        client.close()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    import psycopg

    name = f"modelkiln_e2e_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            info = conn.info
            host, port, user = info.host, info.port, info.user
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    yield f"postgresql://{user}@{host}:{port}/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any MODELKILN_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKILN_")}
    env.update(settings)
    return env


@dataclass
class Proc:
    """A ``modelkiln`` subprocess with its output in a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> Proc:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 90) -> None:
        wait_until(lambda: needle in self.log(), timeout, f"{self.name}: {needle!r}", self)

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 60) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._log is not None:
            self._log.close()
        return self.popen.returncode


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, proc: Proc | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and not proc.alive():
            raise AssertionError(
                f"{proc.name} exited while waiting for {what}:\n{proc.log()[-4000:]}"
            )
        time.sleep(0.1)
    tail = f"\n{proc.name} log:\n{proc.log()[-4000:]}" if proc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")


def wait_healthy(url: str, proc: Proc, timeout: float = 90) -> None:
    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout, f"{url}/healthz", proc)


@dataclass
class Cluster:
    """The distributed mode on one machine: an API process and worker processes."""

    url: str
    env: dict[str, str]
    home: Path
    api: Proc
    workers: list[Proc] = field(default_factory=list)

    def start_worker(self) -> Proc:
        n = len(self.workers) + 1
        proc = Proc(
            f"worker{n}",
            ["worker", "--queues", "cpu"],
            self.env,
            self.home / f"worker{n}.log",
        ).start()
        proc.wait_for_log(" ready.")
        self.workers.append(proc)
        return proc

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive()]

    def client(self) -> ModelKilnClient:
        return ModelKilnClient(self.url, timeout=60)


@pytest.fixture(scope="session")
def cluster(
    redis_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("distributed")
    env = clean_env(
        MODELKILN_HOME=str(home),
        MODELKILN_BROKER_URL=redis_url,
        MODELKILN_DATABASE_URL=postgres_url,
        MODELKILN_ARTIFACTS_DIR=str(home / "shared-artifacts"),
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"], env=env, cwd=ROOT, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = Proc("api", ["api", "--port", str(port)], env, home / "api.log").start()
    c = Cluster(url=url, env=env, home=home, api=api)
    try:
        wait_healthy(url, api)
        c.start_worker()
        yield c
    finally:
        for w in c.workers:
            w.stop()
        api.stop()


@pytest.fixture
def live_cluster(cluster: Cluster) -> Cluster:
    """The cluster with at least one worker running (a test may have stopped one)."""
    if not cluster.live_workers():
        cluster.start_worker()
    return cluster


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LATENCIES:
        return
    tr = terminalreporter
    tr.section("event latency (event written to the store -> SSE client received it)")
    for name, values in LATENCIES:
        if not values:
            continue
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        tr.write_line(
            f"{name}: n={len(ms)} median={statistics.median(ms):.0f} ms p95={p95:.0f} ms "
            f"max={ms[-1]:.0f} ms"
        )
