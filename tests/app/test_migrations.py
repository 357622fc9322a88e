"""``alembic upgrade head`` on an empty database gives exactly the tables the models declare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from app.db import Base, create_engine_for, migrate
from app.settings import Settings


def _schema(engine: Any) -> dict[str, set[str]]:
    insp = inspect(engine)
    return {
        t: {c["name"] for c in insp.get_columns(t)}
        for t in insp.get_table_names()
        if t != "alembic_version"
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_head_matches_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = None if backend == "sqlite" else request.getfixturevalue("pg_database_factory")()
    settings = Settings(home=tmp_path, database_url=url)
    migrate(settings)
    migrate(settings)  # a second start is a no-op
    engine = create_engine_for(settings)
    try:
        declared = {t.name: {c.name for c in t.columns} for t in Base.metadata.sorted_tables}
        assert _schema(engine) == declared
        insp = inspect(engine)
        assert insp.get_pk_constraint("job_events")["constrained_columns"] == ["job_id", "seq"]
        assert {i["name"] for i in insp.get_indexes("jobs")} >= {
            "ix_jobs_created_id",
            "ix_jobs_status",
        }
        # 0002: the worker heartbeats
        assert _schema(engine)["workers"] == {
            "name",
            "hostname",
            "queues",
            "device",
            "pid",
            "started_at",
            "last_seen",
            "job_id",
        }
        assert insp.get_pk_constraint("workers")["constrained_columns"] == ["name"]
        assert [i["name"] for i in insp.get_indexes("workers")] == ["ix_workers_last_seen"]
    finally:
        engine.dispose()


def test_autogenerate_finds_no_difference(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    settings = Settings(home=tmp_path)
    migrate(settings)
    engine = create_engine_for(settings)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
