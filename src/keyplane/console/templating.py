"""Jinja2 set-up for the console: autoescaped templates per feature, and filters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from keyplane.auth.principal import Principal
from keyplane.console.session import FLASH_COOKIE, csrf_token_for, read_flash
from keyplane.kit.keys import hint_display
from keyplane.kit.time import as_utc, rfc3339, utcnow
from keyplane.runtime import Runtime

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def _date(moment: datetime | None) -> str:
    return "Never" if moment is None else as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _day(moment: datetime | None) -> str:
    return "" if moment is None else as_utc(moment).strftime("%Y-%m-%d")


def _timestamp(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["datetime"] = _date
templates.env.filters["timestamp"] = _timestamp
templates.env.filters["day"] = _day
templates.env.filters["key_hint"] = hint_display
templates.env.filters["rfc3339"] = rfc3339


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    principal: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    values: dict[str, Any] = {
        "principal": principal,
        "csrf_token": csrf_token_for(runtime, principal.credential_uid) if principal else "",
        "now": utcnow(),
        "flash": read_flash(request),
        **context,
    }
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    # Pages show keys and names: never cached, never kept in the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
