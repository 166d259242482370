"""Domain errors and how they reach a client.

Every error a client can see is a ``KeyplaneError``; it carries its HTTP status and a
Palette-style code, and one handler renders it as ``{"code", "message", "details", "ref"}``::

    KeyplaneError
    ├── ValidationFailed   400
    ├── Unauthorized       401
    ├── Forbidden          403
    ├── NotFound           404
    ├── MethodNotAllowed   405
    ├── Conflict           409
    ├── PayloadTooLarge    413
    ├── RateLimited        429
    └── Unavailable        503  ServiceUnavailable: a backing service cannot serve the
        │                       request now; always with Retry-After
        ├── DatabaseUnreachable  refused, or the connection was lost
        ├── DatabaseTimeout      no answer within the bound (a partition, a lock held too
        │                        long, no pooled connection free)
        └── StorageFull          no room left to write; nothing was changed

Messages are written for people and never contain a key value, a token or a password.
A failed database call becomes one of these in ``database_failure``, for the JSON API and
the console alike; any other backing service added later gets its own ``Unavailable``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from keyplane.kit.db import timed_out
from keyplane.kit.problems import describe_errors, summary

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


# The routes of kit/routing.py that answer 405 for a fixed path: not methods of that path.
METHOD_GUARD_ROUTE = "keyplane:method-not-allowed"


class MethodNotAllowed(KeyplaneError):
    status_code = 405
    default_code = "MethodNotAllowed"

    def __init__(self, allowed: str) -> None:
        super().__init__(
            f"This method is not allowed on this endpoint; it allows {allowed}.",
            headers={"Allow": allowed},
        )


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


class DatabaseUnreachable(Unavailable):
    default_code = "DatabaseUnreachable"


class DatabaseTimeout(Unavailable):
    default_code = "DatabaseTimeout"


class StorageFull(Unavailable):
    default_code = "StorageFull"


# PostgreSQL SQLSTATEs (Appendix A of its manual).
_RETRY_TRANSACTION = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_DISK_FULL = frozenset({"53100"})
_TIMED_OUT = frozenset({"57014", "55P03"})  # statement_timeout (query_canceled), lock_timeout
_SERVER_GONE = frozenset({"53300", "57P01", "57P02", "57P03"})  # too many connections, shutdown
_SQLITE_TIMED_OUT = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the driver's own beneath SQLAlchemy's, and what caused each."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        pending += [
            error.__context__,
            error.__cause__,
            orig if isinstance(orig, BaseException) else None,
        ]


def _codes(exc: BaseException) -> tuple[set[str], set[int]]:
    sqlstates: set[str] = set()
    sqlite_codes: set[int] = set()
    for error in _chain(exc):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            sqlstates.add(sqlstate)
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int):
            # The extended code's low byte is the primary one (SQLITE_IOERR_* and so on).
            sqlite_codes.add(code & 0xFF)
    return sqlstates, sqlite_codes


def database_failure(exc: BaseException) -> KeyplaneError | None:
    """What a client is told about a failed database call, or None when the failure is
    not the database's (a bug: 500). Never the statement or its values."""
    sqlstates, sqlite_codes = _codes(exc)
    if sqlstates & _RETRY_TRANSACTION:
        # The database gave up one of two transactions that waited on each other; nothing
        # of it was stored, and the same request made again normally succeeds.
        return Conflict(
            "This change collided with another one made at the same time and was not saved; "
            "try again."
        )
    if isinstance(exc, IntegrityError):
        # A uniqueness rule checked by the service, lost to a concurrent request.
        return Conflict(
            "This change conflicts with another one made at the same time; reload and try again."
        )
    if sqlstates & _DISK_FULL or sqlite3.SQLITE_FULL in sqlite_codes:
        return StorageFull(
            "The database has run out of storage space, so nothing was changed; try again later.",
            headers={"Retry-After": "60"},
        )
    if isinstance(exc, PoolTimeout):
        return DatabaseTimeout(
            "The database is busy: no connection to it came free in time; try again shortly.",
            headers={"Retry-After": "5"},
        )
    if timed_out(exc) or sqlstates & _TIMED_OUT or sqlite_codes & _SQLITE_TIMED_OUT:
        return DatabaseTimeout(
            "The database did not answer in time; try again shortly.",
            headers={"Retry-After": "5"},
        )
    if (
        isinstance(exc, (OSError, OperationalError))
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or any(state.startswith("08") for state in sqlstates)
        or sqlstates & _SERVER_GONE
    ):
        return DatabaseUnreachable(
            "The database cannot be reached right now; try again shortly.",
            headers={"Retry-After": "2"},
        )
    return None


def _failure_names(exc: BaseException) -> str:
    """For the log: the kinds of error and their codes, never a message (SQLAlchemy's
    names the statement, a driver's may quote a value)."""
    sqlstates, sqlite_codes = _codes(exc)
    names = " <- ".join(dict.fromkeys(type(error).__name__ for error in _chain(exc)))
    codes = [f"SQLSTATE {state}" for state in sorted(sqlstates)]
    codes += [f"SQLite code {code}" for code in sorted(sqlite_codes)]
    return f"{names} ({', '.join(codes)})" if codes else names


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
    errors: Sequence[Any], content_type: str
) -> tuple[bool, str, list[dict[str, str]]]:
    """Field errors in Keyplane's words, without the offending input: it may be a password
    or a key."""
    fields = describe_errors(errors)
    invalid_json = next((error for error in errors if error.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        reason = str((invalid_json.get("ctx") or {}).get("error", "")).rstrip(".")
        location = invalid_json.get("loc", ())
        offset = location[-1] if location and isinstance(location[-1], int) else None
        where = f" at character {offset + 1}" if offset is not None else ""
        detail = f": {reason[:1].lower()}{reason[1:]}{where}" if reason else where
        return True, f"The request body is not valid JSON{detail}.", fields
    body_not_json = any(
        item["field"] == "(body)" and item["problem"] == "must be a JSON object" for item in fields
    )
    if body_not_json and "json" not in content_type.lower():
        return (
            False,
            "The request body must be a JSON object, sent with Content-Type: application/json.",
            fields,
        )
    return False, f"The request is invalid: {summary(fields)}.", fields


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
        malformed, message, fields = _describe_validation_errors(
            exc.errors(), request.headers.get("content-type", "")
        )
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
        # Also the drivers' own OSError (refused, unreachable, timed out) and SQLAlchemy's
        # errors that are not the driver's (no pooled connection free in time).
        error = database_failure(exc)
        if error is None:
            return await on_unexpected(request, exc)
        log = logger.warning if error.status_code >= 500 else logger.info
        log("database: %s (ref %s): %s", error.code, request_ref(request), _failure_names(exc))
        return error_response(
            request, error.status_code, error.code, error.message, error.details, error.headers
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
    app.add_exception_handler(SQLAlchemyError, on_database_error)
    app.add_exception_handler(OSError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed_methods(request: Request, tried: str) -> str:
    """Every method of the path, as a 405 must list them (RFC 9110). Starlette's own
    ``Allow`` (``tried``) names only the methods of the one route it tried, and FastAPI makes
    one route per method: gather those of every route with the same path template."""
    routes = [
        route
        for route in iter_route_contexts(request.app.router.routes)
        if route.name != METHOD_GUARD_ROUTE
    ]
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
