"""Console sessions: the session token in an HttpOnly cookie, and CSRF tokens for forms."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import Depends, Request, Response

from keyplane.auth import service as auth
from keyplane.auth.principal import Principal
from keyplane.kit.client_address import client_address
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Forbidden, Unauthorized
from keyplane.runtime import Runtime, RuntimeDep

SESSION_COOKIE = "keyplane_session"
LOGIN_CSRF_COOKIE = "keyplane_login_csrf"
FLASH_COOKIE = "keyplane_flash"


class LoginRequired(Exception):
    """No valid console session: the page answers with the login form."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=_secure(request), path="/"
    )


def csrf_token_for(runtime: Runtime, session_uid: str) -> str:
    """Bound to the login session: valid for its lifetime, useless with any other."""
    return runtime.secret_hasher.hash_label("console-csrf", session_uid)[:40]


def check_csrf(runtime: Runtime, principal: Principal, submitted: str) -> None:
    expected = csrf_token_for(runtime, principal.credential_uid)
    if not hmac.compare_digest(expected, submitted):
        raise Forbidden(
            "This form has expired or did not come from this console. Reload the page and "
            "try again.",
            code="CsrfFailed",
        )


def require_tenant_admin(principal: Principal) -> None:
    """Tenant Settings pages are for tenant admins; anyone else gets the 403 page."""
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can open Tenant Settings.")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_login_csrf_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )


def set_flash(request: Request, response: Response, message: str, kind: str = "ok") -> None:
    response.set_cookie(
        FLASH_COOKIE,
        # Cookies carry ASCII only; names in messages may not be.
        quote(f"{kind}:{message[:300]}", safe=""),
        max_age=60,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def read_flash(request: Request) -> tuple[str, str] | None:
    """The message a redirect left for the next page; the page clears it."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, message = unquote(raw).partition(":")
    return (kind if kind in {"ok", "error"} else "ok"), message


async def get_console_principal(
    request: Request, session: DbSession, runtime: RuntimeDep
) -> Principal:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired("")
    address = client_address(request)
    try:
        principal = await auth.authenticate_session_token(session, runtime, token, address)
    except Unauthorized as exc:
        # A cookie is a session token like any other: guessing is limited the same way.
        await auth.refuse_if_over_limit(session, runtime, address, "session cookie", exc)
        reason = (
            "Your session has expired. Log in again."
            if exc.code
            in {
                "TokenExpired",
                "TokenRevoked",
            }
            else "Please log in again."
        )
        raise LoginRequired(reason) from exc
    request.state.principal = principal
    return principal


ConsolePrincipal = Annotated[Principal, Depends(get_console_principal)]
