"""A small typed client for the ModelKiln REST API, shared by the CLI and the tests.

Every call returns decoded JSON (or bytes for images) and raises one exception type,
:class:`ClientError`, for everything that can go wrong: the API's error shape
(``{"error": code, "detail": text}``) as well as a server that cannot be reached.

    >>> with ModelKilnClient("http://127.0.0.1:8000") as api:
    ...     job = api.create_job("gan", {"name": "digits"}, {"epochs": 3})
    ...     for event in api.events(job["id"]):
    ...         print(event.event, event.data)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

Json = dict[str, Any]


class ClientError(Exception):
    """A failed call: the API's ``error`` code and ``detail``, or a connection failure.

    ``status`` is the HTTP status (``None`` when no response came back, e.g. the server is
    down, in which case ``error`` is ``"unreachable"``). ``str(err)`` is one human line.
    """

    def __init__(self, error: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.status = status

    def __str__(self) -> str:
        prefix = f"{self.status} {self.error}" if self.status is not None else self.error
        return f"{prefix}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Event:
    """One Server-Sent Event: ``id`` (the per-job sequence number), ``event`` and JSON ``data``."""

    id: int | None
    event: str
    data: Any


def _error_from_response(response: httpx.Response) -> ClientError:
    """Turn a non-2xx response into a ClientError, reading the API's error shape if present."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        detail = body.get("detail")
        if not isinstance(detail, str):
            detail = json.dumps(detail) if detail is not None else response.reason_phrase
        return ClientError(str(body["error"]), detail, response.status_code)
    if isinstance(body, dict) and "detail" in body:  # FastAPI's default shape, just in case
        return ClientError("http_error", _flatten_detail(body["detail"]), response.status_code)
    text = response.text.strip().splitlines()[0] if response.text.strip() else ""
    return ClientError("http_error", text or response.reason_phrase, response.status_code)


def _flatten_detail(detail: Any) -> str:
    """A pydantic-style list of errors as one line: ``loc: msg; loc: msg``."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _parse_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str]]:
    """Yield ``(id, event, data)`` for each complete event in an SSE line stream.

    Follows the WHATWG rules that matter here: ``data`` lines are joined with newlines,
    a blank line dispatches, lines starting with ``:`` are comments (keep-alives).
    """
    event_id: str | None = None
    event_type = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event_id, event_type or "message", "\n".join(data)
            event_id, event_type, data = None, "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id":
            event_id = value


class ModelKilnClient:
    """Synchronous client for ``/v1``; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> ModelKilnClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ClientError("timeout", f"{self.base_url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise ClientError(
                "unreachable", f"cannot reach the ModelKiln API at {self.base_url} ({exc})"
            ) from exc
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                "bad_response", f"{method} {path} did not return JSON", response.status_code
            ) from exc

    # -- jobs -------------------------------------------------------------------------

    def create_job(
        self,
        model: str,
        dataset: Mapping[str, str],
        hyperparams: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        device: str | None = None,
        name: str | None = None,
    ) -> Json:
        """Submit a training job; returns the created job."""
        body: Json = {
            "model": model,
            "dataset": dict(dataset),
            "hyperparams": dict(hyperparams or {}),
        }
        if seed is not None:
            body["seed"] = seed
        if device is not None:
            body["device"] = device
        if name is not None:
            body["name"] = name
        job: Json = self._json("POST", "/v1/jobs", json=body)
        return job

    def list_jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Json:
        """One page of jobs, newest first: ``{"data": [...], "next_cursor": ...}``."""
        params = {"status": status, "model": model, "limit": limit, "cursor": cursor}
        page: Json = self._json("GET", "/v1/jobs", params=_drop_none(params))
        return page

    def get_job(self, job_id: str) -> Json:
        job: Json = self._json("GET", f"/v1/jobs/{job_id}")
        return job

    def cancel_job(self, job_id: str) -> Json:
        """Ask a queued or running job to stop (202); returns the job as the API reports it."""
        job: Json = self._json("POST", f"/v1/jobs/{job_id}/cancel") or {}
        return job

    def delete_job(self, job_id: str) -> None:
        """Remove a finished job and its artifacts."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def losses(
        self,
        job_id: str,
        *,
        after: int | None = None,
        limit: int | None = None,
        every: int | None = None,
    ) -> Json:
        """One JSON page of the loss history (``after`` is an event sequence number)."""
        params = {"after": after, "limit": limit, "every": every}
        page: Json = self._json("GET", f"/v1/jobs/{job_id}/losses", params=_drop_none(params))
        return page

    def losses_csv(self, job_id: str, *, every: int | None = None) -> str:
        """The whole loss history as CSV text."""
        params = _drop_none({"format": "csv", "every": every})
        return self._request("GET", f"/v1/jobs/{job_id}/losses", params=params).text

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        reconnect_for: float = 30.0,
    ) -> Iterator[Event]:
        """Replay then follow the job's event stream until its ``end`` event.

        If the connection drops (say the server restarts) it reconnects with
        ``Last-Event-ID`` — no gap, no duplicate — for up to ``reconnect_for`` seconds of
        continuous failure before raising :class:`ClientError`.
        """
        last = last_event_id
        failing_since: float | None = None
        delay = 0.2
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._http.stream(
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=None),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _error_from_response(response)
                    failing_since, delay = None, 0.2
                    for raw_id, name, raw_data in _parse_sse(response.iter_lines()):
                        try:
                            data: Any = json.loads(raw_data)
                        except ValueError:
                            data = raw_data
                        seq = int(raw_id) if raw_id and raw_id.isdigit() else None
                        if seq is not None:
                            last = seq
                        yield Event(seq, name, data)
                        if name == "end":
                            return
            except (httpx.TransportError, httpx.StreamError) as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > reconnect_for:
                    raise ClientError(
                        "unreachable",
                        f"lost the event stream from {self.base_url} and could not reconnect "
                        f"({exc})",
                    ) from exc
            except ClientError as exc:
                if exc.status is None or exc.status < 500:
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > reconnect_for:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def samples(
        self,
        job_id: str,
        *,
        n: int = 64,
        seed: int | None = None,
        nrow: int | None = None,
        format: str = "png",
    ) -> bytes:
        """GAN samples from the latest checkpoint, as the bytes of the requested format."""
        params = _drop_none({"n": n, "seed": seed, "nrow": nrow, "format": format})
        return self._request("GET", f"/v1/jobs/{job_id}/samples", params=params).content

    def progress_gif(self, job_id: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/progress.gif").content

    def predict(
        self,
        job_id: str,
        *,
        inputs: list[Any] | None = None,
        image: Path | None = None,
    ) -> Json:
        """Class probabilities for JSON ``inputs`` (a list of rows) or one image file."""
        if (inputs is None) == (image is None):
            raise ValueError("give exactly one of inputs or image")
        if image is not None:
            with image.open("rb") as fh:
                files = {"file": (image.name, fh, _content_type(image))}
                result: Json = self._json("POST", f"/v1/jobs/{job_id}/predict", files=files)
            return result
        result = self._json("POST", f"/v1/jobs/{job_id}/predict", json={"inputs": inputs})
        return result

    # -- datasets and service -----------------------------------------------------------

    def datasets(self) -> list[Json]:
        """Built-in and uploaded datasets."""
        body = self._json("GET", "/v1/datasets")
        if isinstance(body, dict):
            data: list[Json] = body.get("data", [])
            return data
        return list(body or [])

    def upload_dataset(
        self, path: Path, *, name: str | None = None, label_column: str | None = None
    ) -> Json:
        """Upload a CSV, NPZ or ZIP-of-PNG-folders dataset; returns its record (with ``id``).

        ``label_column`` names a CSV's label column when it is not one of the usual names
        (label, y, target, class).
        """
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, _content_type(path))}
            data = _drop_none({"name": name, "label_column": label_column})
            record: Json = self._json("POST", "/v1/datasets", files=files, data=data)
        return record

    def health(self) -> Json:
        body: Json = self._json("GET", "/healthz") or {}
        return body

    def readiness(self) -> Json:
        """``/readyz``: the store, broker and workers as the API sees them (503 → ClientError)."""
        body: Json = self._json("GET", "/readyz") or {}
        return body


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _content_type(path: Path) -> str:
    return {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".csv": "text/csv",
        ".zip": "application/zip",
        ".npz": "application/octet-stream",
    }.get(path.suffix.lower(), "application/octet-stream")
