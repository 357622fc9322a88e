"""Fixtures for the worker tests: a real SQLite job store in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db import create_engine_for, migrate
from app.settings import Settings
from app.store import JobStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        broker_url="memory://",
        artifacts_dir=tmp_path / "artifacts",
        event_flush_interval_s=0.05,
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    migrate(settings)
    engine = create_engine_for(settings)
    yield JobStore(engine)
    engine.dispose()
