"""Embedded mode for real: `modelkiln serve` (API + one worker process, SQLite store and
SQLite broker under a temporary MODELKILN_HOME; no Redis, no PostgreSQL)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import ModelKilnClient
from app.db import create_engine_for
from app.settings import Settings
from app.store import JobStatus, JobStore
from tests.e2e import flows
from tests.e2e.conftest import Proc, clean_env, free_port, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


class Embedded:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(MODELKILN_HOME=str(home))
        self.proc: Proc | None = None
        self.runs = 0

    def start(self) -> Proc:
        self.runs += 1
        log = self.home.parent / f"{self.home.name}-serve{self.runs}.log"
        self.proc = Proc("serve", ["serve", "--port", str(self.port)], self.env, log).start()
        wait_healthy(self.url, self.proc)
        self.proc.wait_for_log(" ready.")  # the worker subprocess logs to the same file
        return self.proc

    def client(self) -> ModelKilnClient:
        return ModelKilnClient(self.url, timeout=60)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    e = Embedded(tmp_path_factory.mktemp("embedded") / "home")
    e.start()
    try:
        yield e
    finally:
        if e.proc is not None:
            e.proc.stop()


def test_a_gan_streams_to_end_and_serves_a_png_grid(embedded: Embedded) -> None:
    with embedded.client() as api:
        latencies = flows.gan_streams_to_end_and_serves_a_png(api)
    flows.LATENCIES.append(("embedded (SQLite store + SQLite broker)", latencies))
    assert (embedded.home / "modelkiln.db").is_file() and (embedded.home / "broker.db").is_file()


def test_a_cnn_trains_and_predicts(embedded: Embedded) -> None:
    with embedded.client() as api:
        flows.cnn_trains_and_predicts(api)


def test_cancelling_a_running_job_keeps_its_checkpoint_and_losses(embedded: Embedded) -> None:
    with embedded.client() as api:
        flows.cancel_a_running_job(api)


def test_sigterm_stops_api_and_worker_and_the_job_resumes_at_the_next_start(
    embedded: Embedded,
) -> None:
    assert embedded.proc is not None
    with embedded.client() as api:
        job = flows.gan_job(api, epochs=20, batch_size=32)
        running = flows.wait_step(api, job["id"], 20)
    worker_pid = int(running["worker"].split("@")[0].rsplit(".", 1)[1])

    embedded.proc.signal(signal.SIGTERM)
    assert embedded.proc.wait(timeout=90) == 0, embedded.proc.log()[-3000:]
    assert not _alive(worker_pid), "the worker process outlived `modelkiln serve`"
    store = JobStore(create_engine_for(Settings(home=embedded.home)))
    paused = store.get_job(job["id"])
    assert paused is not None and paused.status is JobStatus.queued  # checkpointed, re-queued
    store.engine.dispose()

    embedded.start()
    with embedded.client() as api:
        done = flows.wait_status(api, job["id"], timeout=540)
        assert done["status"] == "succeeded" and done["attempts"] == 2
        steps = flows.loss_steps(api, job["id"], "d_loss")
        assert steps == list(range(1, done["total_steps"] + 1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("zombie") < 0
