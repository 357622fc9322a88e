"""One error hierarchy and the handlers that render every failure as ``{"error", "detail"}``.

Routes raise :class:`AppError` subclasses; validation errors, unknown routes, other HTTP
exceptions and an unreachable database are mapped to the same shape here, so a client
parses one thing everywhere. Nothing a client sends should reach the 500 handler.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class AppError(Exception):
    """A failure with an HTTP status and a machine-readable ``code``."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")


class Conflict(AppError):
    """Wrong state or wrong model kind for the call."""

    status_code = 409
    code = "conflict"


class WrongState(Conflict):
    code = "wrong_state"


class WrongModel(Conflict):
    code = "wrong_model"


class NoCheckpoint(Conflict):
    code = "no_checkpoint"


class NotReady(Conflict):
    """The job has not produced what was asked for yet (no progress images, say)."""

    code = "not_ready"


class Invalid(AppError):
    status_code = 422
    code = "invalid"


class InvalidDataset(Invalid):
    code = "invalid_dataset"


class TooLarge(AppError):
    status_code = 413
    code = "too_large"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class BrokerUnavailable(Unavailable):
    code = "broker_unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


def error_body(code: str, detail: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(error_body(exc.code, exc.detail), status_code=exc.status_code)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if exc.detail else code.replace("_", " ")
    return JSONResponse(error_body(code, detail), status_code=exc.status_code, headers=exc.headers)


def _plain_message(err: dict[str, Any]) -> str:
    """Pydantic's message, reworded where it would show Python reprs to an HTTP client."""
    ctx = err.get("ctx") or {}
    if err.get("type") == "union_tag_invalid":  # e.g. {"model": "foo"}
        tags = re.findall(r": '([^']*)'>", str(ctx.get("expected_tags", "")))
        expected = ", ".join(tags) or str(ctx.get("expected_tags", ""))
        return f"{ctx.get('discriminator')} must be one of {expected}; got {ctx.get('tag')!r}"
    if err.get("type") == "union_tag_not_found":  # the discriminator field is missing
        return f"{ctx.get('discriminator')} is required"
    return str(err.get("msg", ""))


def _reworded(err: dict[str, Any]) -> dict[str, Any]:
    """``err`` with its plain message; a JSON syntax error is located at the body itself (its
    character offset, which pydantic puts in ``loc``, goes into the message)."""
    if err.get("type") != "json_invalid":
        return {**err, "msg": _plain_message(err)}
    loc = tuple(err.get("loc", ()))  # ("body", character offset)
    at = f" at character {loc[1]}" if len(loc) > 1 else ""
    reason = (err.get("ctx") or {}).get("error", "decode error")
    return {**err, "msg": f"the body is not valid JSON: {reason}{at}", "loc": loc[:1]}


def _flatten(errors: Any) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(parts) or "invalid request"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_reworded(e) for e in exc.errors()]
    body = error_body("invalid", _flatten(errors))
    # The structured list too, for programs (ctx may hold exceptions: make it JSON-safe).
    body["errors"] = jsonable_encoder(
        [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    )
    return JSONResponse(body, status_code=422)


async def _store_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("job store unreachable: %s", exc)
    return JSONResponse(
        error_body(StoreUnavailable.code, "the job store is unreachable; try again shortly"),
        status_code=503,
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the ``{"error", "detail"}`` shape."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _store_down)
    app.add_exception_handler(InterfaceError, _store_down)
    app.add_exception_handler(Exception, _unexpected)
