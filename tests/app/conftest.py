"""Fixtures for the API tests: a fresh app per test, and a job store on SQLite and PostgreSQL.

PostgreSQL runs at 127.0.0.1:5432 (user postgres, trust auth; override with
MODELKILN_TEST_PG_URL). Each test session creates its own database and drops it after.
Without PostgreSQL the PostgreSQL cases skip — except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text, update

from app.db import Base, WorkerHeartbeat, create_engine_for, migrate, utcnow
from app.deps import get_celery
from app.main import create_app
from app.settings import Settings
from app.store import JobStore

PG_ADMIN_URL = os.environ.get(
    "MODELKILN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --- a stand-in for the Celery app ---------------------------------------------------------------


class FakeConnection:
    def __init__(self, up: bool, depths: dict[str, int]) -> None:
        self.up = up
        self.depths = depths
        self.default_channel = self

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def ensure_connection(self, **_: Any) -> None:
        if not self.up:
            raise ConnectionRefusedError("broker down")

    def queue_declare(self, queue: str, passive: bool) -> tuple[str, int, int]:
        return queue, self.depths.get(queue, 0), 0


class FakeCelery:
    """What the API uses of Celery: ``send_task``, a broker connection, ``control.ping``."""

    def __init__(self) -> None:
        self.send_task = mock.Mock(name="send_task")
        self.broker_up = True
        self.depths = {"cpu": 3, "gpu": 1}
        self.control = mock.Mock(name="control")
        self.control.ping.return_value = [{"celery@host": {"ok": "pong"}}]

    def connection_for_write(self) -> FakeConnection:
        return FakeConnection(self.broker_up, self.depths)

    connection_for_read = connection_for_write


def age_worker(store: JobStore, name: str, seconds: float) -> None:
    """Make worker ``name``'s last heartbeat ``seconds`` old (a worker that went silent)."""
    with store.engine.begin() as conn:
        conn.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.name == name)
            .values(last_seen=utcnow() - timedelta(seconds=seconds))
        )


def beat(store: JobStore, name: str, queues: tuple[str, ...] = ("cpu",), **kw: Any) -> None:
    """One heartbeat of worker ``name``, as :class:`worker.heartbeat.Heartbeat` writes it."""
    kw = {"hostname": "host", "device": "cpu", "pid": 4242, "started_at": utcnow(), **kw}
    store.heartbeat(name, queues=queues, **kw)


@pytest.fixture
def fake_celery() -> FakeCelery:
    return FakeCelery()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", readiness_timeout_s=0.2, sse_poll_interval_s=0.05)


@pytest.fixture
def app(settings: Settings, fake_celery: FakeCelery) -> FastAPI:
    app = create_app(settings)
    app.dependency_overrides[get_celery] = lambda: fake_celery
    app.state.fake_celery = fake_celery
    return app


@pytest.fixture
def client(app: FastAPI, fake_celery: FakeCelery) -> Iterator[TestClient]:
    with TestClient(app) as c:
        app.state.celery = fake_celery  # the /metrics collector reads app.state directly
        yield c


@pytest.fixture
def api_store(client: TestClient) -> JobStore:
    """The store of the running ``client`` app (to insert events behind the API's back)."""
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]
    return store


# --- PostgreSQL: one database per test session ----------------------------------------------------


def _pg_or_skip() -> None:
    try:
        with create_engine(PG_ADMIN_URL).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true and is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}")


@pytest.fixture(scope="session")
def pg_database_factory() -> Iterator[Any]:
    """Creates empty PostgreSQL databases on demand; drops them all at the end."""
    created: list[str] = []
    admin: Engine | None = None

    def make() -> str:
        nonlocal admin
        _pg_or_skip()
        if admin is None:
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"modelkiln_test_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_store_engine(pg_database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    url = pg_database_factory()
    settings = Settings(home=tmp_path_factory.mktemp("pg"), database_url=url)
    engine = create_engine_for(settings)
    migrate(settings, engine)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A migrated, empty job store on each backend."""
    if request.param == "sqlite":
        settings = Settings(home=tmp_path / "sqlite")
        engine = create_engine_for(settings)
        migrate(settings, engine)
        yield JobStore(engine)
        engine.dispose()
        return
    engine = request.getfixturevalue("pg_store_engine")
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    yield JobStore(engine)
