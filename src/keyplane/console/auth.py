"""Log in, log out, and the landing pages."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from keyplane.auth import service as auth
from keyplane.console.routing import ConsoleRoute, redirect
from keyplane.console.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsolePrincipal,
    check_csrf,
    clear_session_cookie,
    new_login_csrf,
    set_login_csrf_cookie,
    set_session_cookie,
)
from keyplane.console.templating import render
from keyplane.kit.client_address import client_address
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Forbidden, RateLimited, Unauthorized, ValidationFailed
from keyplane.runtime import RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _safe_next(next_url: str) -> str:
    # Only paths on this site: never an open redirect to another origin.
    if next_url.startswith("/") and not next_url.startswith(("//", "/\\")):
        return next_url
    return "/"


def _login_page(
    request: Request,
    *,
    email: str = "",
    org: str = "",
    next_url: str = "/",
    error: str = "",
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    token = new_login_csrf()
    response = render(
        request,
        "auth/login.html",
        {
            "login_csrf": token,
            "email": email,
            "org": org,
            "next_url": _safe_next(next_url),
            "error": error,
            "notice": "",
        },
        status_code=status_code,
    )
    set_login_csrf_cookie(request, response, token)
    response.headers.update(headers or {})
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> Response:
    return _login_page(request, next_url=next)


@router.post("/login")
async def login(
    request: Request,
    runtime: RuntimeDep,
    email: Annotated[str, Form()] = "",
    org: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_page(
            request,
            email=email,
            org=org,
            next_url=next,
            error="The login form expired. Please try again.",
            status_code=403,
        )
    if not email.strip() or not password:
        return _login_page(
            request,
            email=email,
            org=org,
            next_url=next,
            error="Enter your email and password.",
            status_code=400,
        )
    try:
        token = await auth.login(
            runtime,
            email,
            org.strip() or None,
            password,
            client_address(request),
            ttl_seconds=runtime.settings.console_session_ttl_seconds,
        )
    except (Unauthorized, ValidationFailed, RateLimited) as exc:
        # A locked account or an address over its limit: the message says until when, and
        # Retry-After says it to machines.
        return _login_page(
            request,
            email=email,
            org=org,
            next_url=next,
            error=exc.message,
            status_code=exc.status_code,
            headers=exc.headers,
        )
    response = redirect(_safe_next(next))
    set_session_cookie(request, response, token, runtime.settings.console_session_ttl_seconds)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(runtime, principal, csrf_token)
    await auth.logout(session, principal)
    response = redirect("/login")
    clear_session_cookie(request, response)
    return response


@router.get("/")
async def home(request: Request) -> Response:
    return redirect("/my/api-keys" if SESSION_COOKIE in request.cookies else "/login")


@router.get("/tenant/settings")
async def tenant_settings(request: Request, principal: ConsolePrincipal) -> Response:
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can open Tenant Settings.")
    return render(
        request,
        "tenants/settings.html",
        {"scope": "tenant", "section": "overview"},
        principal=principal,
    )
