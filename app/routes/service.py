"""Service endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import CeleryDep, SettingsDep, StoreDep
from app.errors import error_body
from app.queue import broker_ok, workers_answering
from app.schemas import HealthPublic, ReadinessPublic

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
    """Readiness: the store and the broker answer, and at least one worker does."""
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
    if checks["broker"] == "ok":
        try:
            names = workers_answering(celery, timeout)
            checks["workers"] = f"ok: {len(names)}" if names else "no worker answered a ping"
        except Exception as exc:
            checks["workers"] = f"cannot ping workers: {type(exc).__name__}: {exc}"
    else:
        checks["workers"] = "not checked: the broker is unreachable"
    failed = [k for k, v in checks.items() if not v.startswith("ok")]
    if failed:
        body = error_body("not_ready", "; ".join(f"{k}: {checks[k]}" for k in failed))
        return JSONResponse({**body, "checks": checks}, status_code=503)
    return JSONResponse(ReadinessPublic(status="ready", checks=checks).model_dump())


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: jobs by status, queue depth per queue, request latency."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
