"""Dependencies of the route handlers, as ``Annotated`` aliases (``SettingsDep``, ``StoreDep``, …).

Everything heavy is made once in the app's lifespan and kept on ``app.state``; these
functions only hand it out, so tests override one with ``app.dependency_overrides``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from app.catalog import Catalog
from app.errors import JobNotFound
from app.queue import TaskSender
from app.sampling import ModelCache
from app.settings import Settings
from app.store import JobRecord, JobStore

JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_celery(request: Request) -> Any:
    return request.app.state.celery


def get_models(request: Request) -> ModelCache:
    models: ModelCache = request.app.state.models
    return models


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
CeleryDep = Annotated[TaskSender, Depends(get_celery)]
ModelsDep = Annotated[ModelCache, Depends(get_models)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
JobId = Annotated[
    str, Path(description="The job's id.", pattern=JOB_ID_PATTERN, examples=["k3v9x0q2m1ab"])
]


def get_job(job_id: JobId, store: StoreDep) -> JobRecord:
    """The job named in the path, or 404."""
    job = store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


JobDep = Annotated[JobRecord, Depends(get_job)]
