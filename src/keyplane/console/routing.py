"""Console routes answer in HTML: a domain error becomes a page, a missing session the
login form. The REST API's JSON error handler never sees them."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from keyplane.console.session import LoginRequired, set_flash
from keyplane.console.templating import render
from keyplane.kit.errors import KeyplaneError


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


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                target = await _resume_target(request)
                query = f"?next={quote(target, safe='')}" if target and target != "/" else ""
                response = redirect(f"/login{query}")
                if exc.reason:
                    set_flash(request, response, exc.reason, "error")
                return response
            except KeyplaneError as exc:
                headings = {403: "Not allowed", 404: "Not found", 401: "Not logged in"}
                return render(
                    request,
                    "common/error.html",
                    {
                        "heading": headings.get(exc.status_code, "Something is not right"),
                        "message": exc.message,
                        "back_url": _same_site_referer(request),
                        "scope": "tenant" if request.url.path.startswith("/tenant") else "user",
                        "section": "error" if request.url.path.startswith("/tenant") else None,
                    },
                    principal=getattr(request.state, "principal", None),
                    status_code=exc.status_code,
                )

        return console_handler
