"""The services' counters over the control API: Prometheus's ``/metrics`` and a JSON summary.

Both read the same files: every service process of this computer counts under
``run/metrics`` (:mod:`popgate.services._metrics`), and a read adds the processes up. The
readers are the administrators who may read the host's logs (Organization Management, Server
Management, View-Only Organization Management); Prometheus logs on with HTTP Basic as a
View-Only account.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from popgate.host._api import CallerDep, ControlContext, error_responses, require_read
from popgate.host._common import API_PREFIX
from popgate.services._metrics import Sample, collect, exposition

__all__ = ["MetricsSummary", "ServiceCounters", "metrics_router", "summarize"]

#: Login results that count as failed logins on the dashboard.
FAILED_LOGINS = frozenset({"failure", "locked_out"})


class ServiceCounters(BaseModel):
    """One service's counters since the host started (``sessions_current`` is a gauge)."""

    service: str
    sessions_current: int = 0
    sessions: int = 0
    connections: int = 0
    logins: int = 0
    failed_logins: int = 0
    commands: int = 0
    bytes_sent: int = 0
    retr_bytes: int = 0
    errors: int = 0
    lock_conflicts: int = 0
    deliveries: int = 0


class MetricsSummary(BaseModel):
    """Every installed service's counters, read at ``at``; rates come from two readings."""

    at: datetime.datetime
    services: list[ServiceCounters]


def _add(counters: ServiceCounters, sample: Sample) -> None:
    value = round(sample.value)
    match sample.name:
        case "popgate_sessions_current":
            counters.sessions_current += value
        case "popgate_sessions_total":
            counters.sessions += value
        case "popgate_connections_total":
            counters.connections += value
        case "popgate_logins_total":
            if sample.labels.get("result") == "success":
                counters.logins += value
            elif sample.labels.get("result") in FAILED_LOGINS:
                counters.failed_logins += value
        case "popgate_commands_total":
            counters.commands += value
        case "popgate_bytes_sent_total":
            counters.bytes_sent += value
        case "popgate_retr_bytes_total":
            counters.retr_bytes += value
        case "popgate_errors_total":
            counters.errors += value
        case "popgate_lock_conflicts_total":
            counters.lock_conflicts += value
        case "popgate_deliveries_total":
            if sample.labels.get("result") == "delivered":
                counters.deliveries += value


def summarize(directory: Path, services: list[str]) -> list[ServiceCounters]:
    """The counters of ``services`` (in that order; zero for one that never ran)."""
    by_service = {name: ServiceCounters(service=name) for name in services}
    for sample in collect(directory):
        counters = by_service.get(sample.labels.get("service", ""))
        if counters is not None:
            _add(counters, sample)
    return list(by_service.values())


def metrics_router(context: ControlContext) -> APIRouter:
    """``/metrics`` and ``/api/v1/metrics`` over ``context``."""
    router = APIRouter()
    directory = context.home.metrics_dir

    @router.get(
        "/metrics",
        tags=["monitoring"],
        response_class=Response,
        responses={
            200: {
                "content": {CONTENT_TYPE_LATEST: {}, "application/openmetrics-text": {}},
                "description": "The counters in Prometheus's text format, or OpenMetrics",
            },
            **error_responses(401, 403, 429),
        },
    )
    async def prometheus(request: Request, caller: CallerDep) -> Response:
        """Every service's counters in Prometheus's text format (OpenMetrics on request)."""
        require_read(caller)
        accept = request.headers.get("accept", "")
        body, content_type = await asyncio.to_thread(exposition, directory, accept)
        return Response(body, headers={"content-type": content_type})

    @router.get(
        f"{API_PREFIX}/metrics", tags=["monitoring"], responses=error_responses(401, 403, 429)
    )
    async def metrics_summary(caller: CallerDep) -> MetricsSummary:
        """The counters the admin center's dashboard charts, one row per installed service."""
        require_read(caller)
        names = list(context.host.processes)
        services = await asyncio.to_thread(summarize, directory, names)
        return MetricsSummary(at=datetime.datetime.now(datetime.UTC), services=services)

    return router
