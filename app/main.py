"""The FastAPI application: ``create_app()`` builds a fresh one (tests build many)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import dashboard
from app.catalog import Catalog
from app.db import create_engine_for, migrate
from app.errors import install_error_handlers
from app.metrics import Metrics, MetricsMiddleware, StateCollector
from app.queue import live_workers_by_queue, queue_depths
from app.routes import datasets, jobs, models, service, stream
from app.sampling import ModelCache
from app.settings import Settings, get_settings
from app.store import JobStore

log = logging.getLogger(__name__)

DESCRIPTION = """Train a sigmoid **neuron**, a **CNN** and a **GAN** as queued jobs, stream
their losses live, then predict and sample from what they learned.

Errors are JSON with one shape everywhere: `{"error": "<code>", "detail": "<text>"}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new API app for ``settings`` (default: the process settings from the environment)."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from worker.celery_app import create_celery

        engine = create_engine_for(settings)
        migrate(settings, engine)
        store = JobStore(engine)
        celery = create_celery(settings)
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        app.state.settings = settings
        app.state.engine = engine
        app.state.store = store
        app.state.celery = celery
        app.state.models = ModelCache(settings.model_cache_size)
        app.state.catalog = Catalog(settings.data_dir)
        collector = StateCollector(
            store.count_by_status,
            lambda: queue_depths(app.state.celery),
            lambda: live_workers_by_queue(store, settings.worker_stale_after_s),
        )
        metrics.add_state_collector(collector)
        try:
            yield
        finally:
            metrics.registry.unregister(collector)
            app.state.models.clear()
            celery.close()
            engine.dispose()

    app = FastAPI(
        title="ModelKiln",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in (jobs, stream, models, datasets, service, dashboard):
        app.include_router(module.router)
    return app
