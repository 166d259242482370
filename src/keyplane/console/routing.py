"""Console routes answer in HTML: a domain error becomes a page, a missing session the
login form, a database that cannot serve a page that says so and when to try again. The
REST API's JSON error handler never sees them."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError

from keyplane.console.session import LoginRequired, set_flash
from keyplane.console.templating import render
from keyplane.kit.errors import KeyplaneError, database_failure, request_ref


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def redirect_with_flash(request: Request, url: str, message: str, kind: str = "ok") -> Response:
    response = redirect(url)
    set_flash(request, response, message, kind)
    return response


# Fields a form may carry over a new login; never a password, a key or a CSRF token.
RESUMABLE_FIELDS = (
    "name",
    "description",
    "user",
    "expiry",
    "custom_date",
    "email",
    "first_name",
    "last_name",
    "role",
)


async def _resume_target(request: Request) -> str:
    """Where to go after logging in again: the page asked for, or, when a form was posted
    with an expired session, that form filled in with what was typed."""
    if request.method == "GET":
        return str(request.url.path)
    path = request.url.path
    if not path.endswith(("/new", "/edit")):
        return ""
    form = await request.form()
    values = {
        name: value
        for name in RESUMABLE_FIELDS
        if isinstance(value := form.get(name), str) and value
    }
    return f"{path}?{urlencode(values)}" if values else path


def _same_site_referer(request: Request) -> str:
    referer = request.headers.get("referer", "")
    origin = f"{request.url.scheme}://{request.url.netloc}/"
    return referer if referer.startswith(origin) else "/"


_UNAVAILABLE_HEADINGS = {
    "DatabaseUnreachable": "The database cannot be reached",
    "DatabaseTimeout": "The database is not answering",
    "StorageFull": "The database is full",
}


async def _database_failures_as_errors(
    handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
) -> Response:
    """A failed database call raised as the domain error it stands for (the one the JSON
    API answers with), so that it gets a page like any other refusal."""
    try:
        return await handler(request)
    except (SQLAlchemyError, OSError) as exc:
        error = database_failure(exc)
        if error is None:
            raise
        raise error from exc


def _unavailable_page(request: Request, exc: KeyplaneError) -> Response:
    headers = exc.headers or {}
    retry_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = render(
        request,
        "common/unavailable.html",
        {
            "heading": _UNAVAILABLE_HEADINGS.get(exc.code, "Temporarily unavailable"),
            "message": exc.message,
            "retry_after": headers.get("Retry-After"),
            "ref": request_ref(request),
            # A form is not posted again by a link: back to the page it came from.
            "retry_url": retry_url if request.method == "GET" else _same_site_referer(request),
        },
        principal=getattr(request.state, "principal", None),
        status_code=exc.status_code,
    )
    response.headers.update(headers)
    return response


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await _database_failures_as_errors(handler, request)
            except LoginRequired as exc:
                target = await _resume_target(request)
                query = f"?next={quote(target, safe='')}" if target and target != "/" else ""
                response = redirect(f"/login{query}")
                if exc.reason:
                    set_flash(request, response, exc.reason, "error")
                return response
            except KeyplaneError as exc:
                if exc.status_code == 503:
                    return _unavailable_page(request, exc)
                headings = {403: "Not allowed", 404: "Not found", 401: "Not logged in"}
                principal = getattr(request.state, "principal", None)
                # Tenant Settings' navigation only for those who may use it: a plain user
                # refused a Tenant Settings URL sees the refusal in their own scope.
                in_settings = request.url.path.startswith("/tenant") and bool(
                    principal is not None and principal.is_tenant_admin
                )
                page = render(
                    request,
                    "common/error.html",
                    {
                        "heading": headings.get(exc.status_code, "Something is not right"),
                        "message": exc.message,
                        "back_url": _same_site_referer(request),
                        "scope": "tenant" if in_settings else "user",
                        "section": "error" if in_settings else None,
                    },
                    principal=principal,
                    status_code=exc.status_code,
                )
                # The error's headers say what the page says to machines (Retry-After of
                # a 429, Allow of a 405), as the JSON API's error handler sends them.
                page.headers.update(exc.headers or {})
                return page

        return console_handler
