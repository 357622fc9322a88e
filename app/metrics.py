"""Prometheus metrics: request latency, jobs by state, queue depth and live workers per queue.

Each app gets its own registry (tests build many apps). Job counts, queue depths and worker
counts are read when Prometheus scrapes, not kept in the process, so several API replicas
agree. Workers are counted from their heartbeats in the job store: a solo-pool worker that is
training cannot answer Celery's remote control, so ``inspect``/``ping`` would miss it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class StateCollector(Collector):
    """``modelkiln_jobs{status}``, ``modelkiln_queue_depth{queue}`` and
    ``modelkiln_workers{queue}``, computed at scrape."""

    def __init__(
        self,
        job_counts: Callable[[], dict[str, int]],
        queue_depths: Callable[[], dict[str, int]],
        worker_counts: Callable[[], dict[str, int]],
    ) -> None:
        self._job_counts = job_counts
        self._queue_depths = queue_depths
        self._worker_counts = worker_counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "modelkiln_jobs", "Jobs in the store by status.", labels=["status"]
        )
        try:
            for status, n in sorted(self._job_counts().items()):
                jobs.add_metric([status], n)
        except Exception as exc:  # a scrape must not fail because the store is down
            log.warning("metrics: cannot count jobs: %s", exc)
        yield jobs
        depth = GaugeMetricFamily(
            "modelkiln_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        try:
            for queue, n in sorted(self._queue_depths().items()):
                depth.add_metric([queue], n)
        except Exception as exc:
            log.warning("metrics: cannot read queue depths: %s", exc)
        yield depth
        workers = GaugeMetricFamily(
            "modelkiln_workers",
            "Live workers (a recent heartbeat) consuming each queue, busy or idle.",
            labels=["queue"],
        )
        try:
            for queue, n in sorted(self._worker_counts().items()):
                workers.add_metric([queue], n)
        except Exception as exc:
            log.warning("metrics: cannot count workers: %s", exc)
        yield workers


class Metrics:
    """The registry and the instruments of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "modelkiln_http_request_duration_seconds",
            "HTTP request latency (until the response starts; streams count their setup).",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def add_state_collector(self, collector: StateCollector) -> None:
        self.registry.register(collector)


class MetricsMiddleware:
    """Pure ASGI middleware timing each request by its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                self._observe(scope, status[0], start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            self._observe(scope, 500, start)
            raise

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.latency.labels(scope.get("method", ""), template, str(status)).observe(
            time.perf_counter() - start
        )
