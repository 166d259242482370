"""The application factory. Nothing happens at import: ``create_app`` builds, the lifespan
connects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from keyplane import __version__
from keyplane.api_keys.endpoints import router as api_keys_router
from keyplane.api_keys.leak_endpoints import router as leaks_router
from keyplane.audit.endpoints import router as audit_router
from keyplane.auth.endpoints import router as auth_router
from keyplane.console.router import router as console_router
from keyplane.console.templating import STATIC_DIR
from keyplane.jobs import JOBS
from keyplane.kit.background import run_periodically
from keyplane.kit.client_address import ClientAddressResolver
from keyplane.kit.db import create_engine, is_sqlite
from keyplane.kit.errors import ErrorBody, install_error_handlers
from keyplane.kit.logging import quicken_logging
from keyplane.kit.metrics import Metrics
from keyplane.kit.middleware import RequestContextMiddleware
from keyplane.kit.migrations import current_revision, head_revision
from keyplane.kit.routing import guard_fixed_paths
from keyplane.notifications.endpoints import router as notifications_router
from keyplane.observability.endpoints import install_observability
from keyplane.permissions.endpoints import router as permissions_router
from keyplane.policies.endpoints import router as policies_router
from keyplane.runtime import Runtime, invalidation_listener
from keyplane.settings import Settings
from keyplane.tenants.endpoints import router as tenants_router
from keyplane.users.endpoints import router as users_router
from keyplane.verification_plane import VerificationPlane
from keyplane.webhooks.endpoints import router as webhooks_router

logger = logging.getLogger("keyplane")

DESCRIPTION = """\
Keyplane manages API keys for the users of each tenant, with Palette's `/v1/apiKeys` API.

Authenticate with an API key in the `ApiKey` header, or with a session token from
`POST /v1/auth/authenticate` in the `Authorization` header. Errors are
`{"code", "message", "details", "ref"}`.
"""

_ERROR_STATUSES = {
    "400": "Invalid request",
    "401": "Missing, invalid, revoked or expired credential",
    "403": "Not allowed for this caller",
    "404": "No such resource (or not visible to this caller)",
    "409": "Conflicts with the current state",
    "413": "The request body is too large",
    "429": "Too many requests",
    "503": "The database cannot serve it now (unreachable, timed out, storage full); see "
    "Retry-After",
}


SWAGGER_UI = "/static/vendor/swagger-ui-5.35.0"


class DatabaseNotMigrated(RuntimeError):
    pass


class KeyplaneApp(FastAPI):
    """FastAPI behind Keyplane's own front door. Every HTTP request first meets ``front``
    (the request middleware, then the verification plane) and only then, when neither has
    answered it, FastAPI's middleware stack (server errors, telemetry, body limit,
    exception handlers) and its router. The requests a tenant's services send at high
    rates thus skip that stack altogether; everything else goes through it as before."""

    front: ASGIApp | None = None
    # Also ``state.metrics``; read from here by every request (``kit.metrics.metrics_of``).
    metrics: Metrics | None = None

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.front is not None:
            scope["app"] = self
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(
        settings.resolved_database_url, timeout_seconds=settings.database_timeout_seconds
    )
    # PostgreSQL: the hot path's reads get a pool without the liveness ping (see Runtime).
    read_engine = (
        engine
        if is_sqlite(engine.url)
        else create_engine(
            settings.resolved_database_url,
            timeout_seconds=settings.database_timeout_seconds,
            pre_ping=False,
            pool_size=5,
        )
    )
    try:
        current, head = await current_revision(engine), head_revision()
        if current != head:
            raise DatabaseNotMigrated(
                f"The database schema is at revision {current or 'none'}, not {head}: run "
                "`keyplane db upgrade` first."
            )
        runtime = Runtime.build(settings, engine, read_engine)
        app.state.runtime = runtime
        app.state.sessionmaker = runtime.sessionmaker
        # How long changes wait for every worker to confirm them (keyplane.kit.invalidation).
        runtime.confirmations.observe = app.state.metrics.observe_confirmation_wait
        listener = invalidation_listener(runtime)
        listener.observe_delay = app.state.metrics.observe_invalidation_delay
        tasks = [
            asyncio.create_task(
                runtime.last_used.run(runtime.sessionmaker, settings.last_used_flush_seconds)
            ),
            asyncio.create_task(listener.run()),
            asyncio.create_task(app.state.metrics.keep_current(runtime)),
        ]
        if settings.background_jobs_enabled:
            tasks.extend(
                asyncio.create_task(
                    run_periodically(job, runtime, settings.background_interval_seconds)
                )
                for job in JOBS
            )
        # Everything made so far (modules, the app, the runtime) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise stall
        # requests for tens of milliseconds under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                await runtime.last_used.flush(runtime.sessionmaker)
            except Exception:
                logger.warning("could not write last-used times at shutdown", exc_info=True)
            await runtime.limiter.aclose()
    finally:
        await engine.dispose()
        if read_engine is not engine:
            await read_engine.dispose()


def create_app(settings: Settings) -> KeyplaneApp:
    app = KeyplaneApp(
        title="Keyplane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for router in (
        auth_router,
        # Before api_keys_router: its /v1/apiKeys/{uid} would otherwise be the first route
        # matching /v1/apiKeys/leaks, and name the methods of a 405's Allow.
        leaks_router,
        api_keys_router,
        users_router,
        notifications_router,
        audit_router,
        tenants_router,
        permissions_router,
        policies_router,
        webhooks_router,
    ):
        app.include_router(router)
    app.include_router(console_router)
    install_observability(app)
    app.metrics = app.state.metrics
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    inner: ASGIApp = app.framework
    if settings.fast_path_enabled:
        inner = VerificationPlane(inner)
    app.front = RequestContextMiddleware(
        inner,
        max_body_bytes=settings.max_request_body_bytes,
        max_json_depth=settings.max_json_depth,
        client_address=ClientAddressResolver(
            trusted_proxies=settings.trusted_proxies, header=settings.client_address_header
        ),
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Served from the package: Keyplane never needs the internet at run time.
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Keyplane API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url="data:,",
        )
        page.headers["Content-Security-Policy"] = _docs_content_security_policy(bytes(page.body))
        return page

    @app.get("/healthz", tags=["health"], operation_id="healthz", include_in_schema=True)
    async def healthz() -> dict[str, str]:
        """Liveness: answers without authentication or database access."""
        return {"status": "ok"}

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # Browsers ask for it on their own; the console's pages link the same SVG.
        return FileResponse(
            STATIC_DIR / "favicon.svg",
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_with_palette_errors(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    guard_fixed_paths(app)
    return app


def _docs_content_security_policy(page: bytes) -> str:
    """Swagger UI starts from one inline script: allowed by its hash, and no other."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def create_app_from_env() -> FastAPI:
    """For uvicorn's ``--factory`` (each worker process builds its own app from the
    environment)."""
    quicken_logging()
    return create_app(Settings())


def _openapi_with_palette_errors(app: FastAPI) -> dict[str, object]:
    """FastAPI documents 422 validation errors; Keyplane answers 400 with Palette's body."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    error_ref = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _ERROR_STATUSES.items():
                responses.setdefault(status, {"description": description, **error_ref})
    return schema
