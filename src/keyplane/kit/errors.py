"""Domain errors and how they reach a client.

Every error a client can see is a ``KeyplaneError``; it carries its HTTP status and a
Palette-style code, and one handler renders it as ``{"code", "message", "details", "ref"}``::

    KeyplaneError
    ├── ValidationFailed   400
    ├── Unauthorized       401
    ├── Forbidden          403
    ├── NotFound           404
    ├── Conflict           409
    ├── PayloadTooLarge    413
    ├── RateLimited        429
    └── Unavailable        503

Messages are written for people and never contain a key value, a token or a password.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

logger = logging.getLogger("keyplane.errors")


class ErrorBody(BaseModel):
    """Palette's ``v1Error``."""

    code: str
    message: str
    details: dict[str, Any] | None = None
    ref: str


class KeyplaneError(Exception):
    status_code: ClassVar[int] = 500
    default_code: ClassVar[str] = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else None


class ValidationFailed(KeyplaneError):
    status_code = 400
    default_code = "InvalidRequest"


class Unauthorized(KeyplaneError):
    status_code = 401
    default_code = "Unauthorized"


class Forbidden(KeyplaneError):
    status_code = 403
    default_code = "Forbidden"


class NotFound(KeyplaneError):
    status_code = 404
    default_code = "ResourceNotFound"


class Conflict(KeyplaneError):
    status_code = 409
    default_code = "Conflict"


class PayloadTooLarge(KeyplaneError):
    status_code = 413
    default_code = "PayloadTooLarge"


class RateLimited(KeyplaneError):
    status_code = 429
    default_code = "TooManyRequests"


class Unavailable(KeyplaneError):
    status_code = 503
    default_code = "ServiceUnavailable"


def request_ref(request: Request) -> str:
    ref = getattr(request.state, "request_id", None)
    return ref if isinstance(ref, str) else "-"


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        code=code,
        message=message,
        details=dict(details) if details else None,
        ref=request_ref(request),
    )
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def _describe_validation_errors(
    errors: Sequence[Any],
) -> tuple[bool, str, list[dict[str, str]]]:
    """Field errors without the offending input: it may be a password or a key."""
    fields: list[dict[str, str]] = []
    malformed_json = False
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            malformed_json = True
        if location and location[0] in {"body", "query", "path", "header"}:
            source, path = location[0], location[1:]
        else:
            source, path = "body", location
        fields.append(
            {
                "in": source,
                "field": ".".join(path) or "(body)",
                "problem": str(error.get("msg", "is invalid")),
            }
        )
    if malformed_json:
        return True, "The request body is not valid JSON.", fields
    summary = "; ".join(f"{item['field']}: {item['problem']}" for item in fields[:5])
    return False, f"The request is invalid: {summary}.", fields


def install_error_handlers(app: FastAPI) -> None:
    async def on_keyplane_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KeyplaneError)
        if exc.status_code >= 500:
            logger.error("%s: %s (ref %s)", exc.code, exc.message, request_ref(request))
        return error_response(
            request, exc.status_code, exc.code, exc.message, exc.details, exc.headers
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        malformed, message, fields = _describe_validation_errors(exc.errors())
        code = "MalformedJson" if malformed else "InvalidRequest"
        return error_response(request, 400, code, message, {"fields": fields})

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {
            400: "InvalidRequest",
            404: "ResourceNotFound",
            405: "MethodNotAllowed",
            413: "PayloadTooLarge",
        }
        messages = {
            404: "No such endpoint.",
            405: "This method is not allowed on this endpoint.",
            413: "The request body is too large.",
        }
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = dict(headers or {})
            headers["Allow"] = _allowed_methods(request, headers.get("Allow", ""))
        return error_response(
            request,
            exc.status_code,
            codes.get(exc.status_code, "HttpError"),
            messages.get(exc.status_code, str(exc.detail)),
            headers=headers,
        )

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        if isinstance(exc, IntegrityError):
            # A uniqueness rule checked by the service, lost to a concurrent request.
            return error_response(
                request,
                409,
                "Conflict",
                "This change conflicts with another one made at the same time; reload and "
                "try again.",
            )
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            logger.warning("database unavailable (ref %s): %s", request_ref(request), exc.orig)
            return error_response(
                request,
                503,
                "ServiceUnavailable",
                "The database cannot be reached right now; try again shortly.",
                headers={"Retry-After": "1"},
            )
        return await on_unexpected(request, exc)

    async def on_connection_error(request: Request, exc: Exception) -> JSONResponse:
        # Raised by the drivers when the database server cannot be reached at all.
        logger.warning("database unreachable (ref %s): %r", request_ref(request), exc)
        return error_response(
            request,
            503,
            "ServiceUnavailable",
            "The database cannot be reached right now; try again shortly.",
            headers={"Retry-After": "1"},
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error (ref %s)", request_ref(request), exc_info=exc)
        return error_response(
            request,
            500,
            "InternalError",
            "Something went wrong on our side; the reference identifies it in the server log.",
        )

    app.add_exception_handler(KeyplaneError, on_keyplane_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(OSError, on_connection_error)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed_methods(request: Request, tried: str) -> str:
    """Every method of the path, as a 405 must list them (RFC 9110). Starlette's own
    ``Allow`` (``tried``) names only the methods of the one route it tried, and FastAPI makes
    one route per method: gather those of every route with the same path template."""
    routes = list(iter_route_contexts(request.app.router.routes))
    # The first route whose path matches is the one the router tried.
    first = next((r for r in routes if r.matches(request.scope)[0] is not Match.NONE), None)
    if first is None or first.path_format is None:
        return tried
    methods = set[str]().union(
        *(r.methods or () for r in routes if r.path_format == first.path_format)
    )
    return ", ".join(sorted(methods)) or tried


def too_many_failures(retry_after: int) -> RateLimited:
    return RateLimited(
        "Too many failed authentication attempts from this address; wait before trying again.",
        code="TooManyAuthFailures",
        details={"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )
