from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from keyplane.kit.client_address import client_address
from keyplane.kit.metrics import CONTENT_TYPE, Metrics, metrics_from_environment
from keyplane.observability import service
from keyplane.observability.schemas import Readiness
from keyplane.runtime import RuntimeDep

router = APIRouter(tags=["health"])


def install_observability(app: FastAPI) -> None:
    """The routes, and the per-app state they read (made here: nothing at import)."""
    app.state.metrics = metrics_from_environment()
    app.state.readiness = service.ReadinessCache()
    app.include_router(router)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format (version 0.0.4)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus metrics, summed over every worker: authentications and verifications by
    outcome, request latency, key cache hits, misses and size, invalidations, database
    pool use, failed-authentication refusals. Who may read them is `KEYPLANE_METRICS`:
    `loopback` (default), `token` (`Authorization: Bearer <KEYPLANE_METRICS_TOKEN>`) or
    `off` (404)."""
    settings = runtime.settings
    service.authorize_scrape(
        settings, client_address(request), request.headers.get("authorization")
    )
    collected: Metrics = request.app.state.metrics
    collected.update(runtime)
    # Reading every worker's files is file I/O: off the event loop.
    body = await anyio.to_thread.run_sync(collected.render)
    return Response(body, media_type=CONTENT_TYPE)


@router.get("/readyz", operation_id="readyz", response_model=Readiness)
async def readyz(request: Request, runtime: RuntimeDep) -> Readiness:
    """Readiness: the database answers, its schema is current, and the invalidation
    channel is connected; 503 `NotReady` naming the failed checks otherwise. No
    authentication. (`/healthz` is liveness only.)"""
    checks = await service.readiness_checks(runtime, request.app.state.readiness)
    service.require_ready(checks)
    return Readiness(checks=checks)
