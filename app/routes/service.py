"""Service endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import CeleryDep, SettingsDep, StoreDep
from app.errors import error_body
from app.queue import broker_ok, workers_answering
from app.schemas import HealthPublic, ReadinessPublic
from app.settings import Settings
from app.store import JobStore

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=HealthPublic)
def healthz() -> HealthPublic:
    """Liveness: the API process answers."""
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessPublic,
    responses={503: {"description": "A check failed; `checks` says which."}},
)
def readyz(store: StoreDep, celery: CeleryDep, settings: SettingsDep) -> Response:
    """Readiness: the store and the broker answer, and at least one worker is alive."""
    timeout = settings.readiness_timeout_s
    checks: dict[str, str] = {}
    try:
        store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
    try:
        broker_ok(celery, timeout)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}: {exc}"
    checks["workers"] = _workers_check(store, celery, settings, broker_up=checks["broker"] == "ok")
    failed = [k for k, v in checks.items() if not v.startswith("ok")]
    if failed:
        body = error_body("not_ready", "; ".join(f"{k}: {checks[k]}" for k in failed))
        return JSONResponse({**body, "checks": checks}, status_code=503)
    return JSONResponse(ReadinessPublic(status="ready", checks=checks).model_dump())


def _workers_check(store: JobStore, celery: Any, settings: Settings, *, broker_up: bool) -> str:
    """``ok: N`` if some worker is alive, else why not.

    Alive means a heartbeat in the job store within ``worker_stale_after_s``: a solo-pool
    worker that is training runs the job on the thread that would answer a Celery ping, so
    while every worker is busy a ping gets no answer, and readiness must not fail for that.
    The ping stays as a fallback, asked only when no heartbeat is fresh, so it costs nothing
    in the usual case: it still finds an idle worker that writes no heartbeat (one of a
    release before heartbeats, during a rolling upgrade) or whose heartbeat thread is
    failing to reach the store at the moment.
    """
    window = settings.worker_stale_after_s
    try:
        live = store.live_workers(window)
        if live:
            return f"ok: {len(live)}"
        why = f"no worker heartbeat in the last {window:g} s"
    except Exception as exc:
        why = f"cannot read worker heartbeats: {type(exc).__name__}"
    if not broker_up:
        return f"{why}; not pinged: the broker is unreachable"
    try:
        names = workers_answering(celery, settings.readiness_timeout_s)
    except Exception as exc:
        return f"{why}; cannot ping workers: {type(exc).__name__}: {exc}"
    if names:
        return f"ok: {len(names)} answered a ping ({why})"
    return f"{why}, and none answered a ping"


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: jobs by status, queue depth and live workers per queue, latency."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
