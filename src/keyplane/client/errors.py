"""What can go wrong talking to Keyplane, as exceptions carrying Palette's error fields::

KeyplaneError
├── ValidationError      400, 413
├── AuthenticationError  401
├── PermissionDenied     403
├── NotFound             404
├── Conflict             409
├── RateLimited          429  (retry_after, in seconds)
├── ServerError          5xx
└── ConnectionFailed     the server could not be reached
"""

from __future__ import annotations

from typing import Any


class KeyplaneError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status_code: int = 0,
        code: str = "",
        details: Any = None,
        ref: str = "",
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.details = details
        self.ref = ref


class ValidationError(KeyplaneError):
    pass


class AuthenticationError(KeyplaneError):
    pass


class PermissionDenied(KeyplaneError):
    pass


class NotFound(KeyplaneError):
    pass


class Conflict(KeyplaneError):
    pass


class RateLimited(KeyplaneError):
    def __init__(self, message: str, *, retry_after: float | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after


class ServerError(KeyplaneError):
    pass


class ConnectionFailed(KeyplaneError):
    pass


_BY_STATUS: dict[int, type[KeyplaneError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: ValidationError,
    422: ValidationError,
}


def error_for(status_code: int, body: Any, retry_after: float | None) -> KeyplaneError:
    fields = body if isinstance(body, dict) else {}
    message = str(fields.get("message") or f"HTTP {status_code}")
    common: dict[str, Any] = {
        "status_code": status_code,
        "code": str(fields.get("code") or ""),
        "details": fields.get("details"),
        "ref": str(fields.get("ref") or ""),
    }
    if status_code == 429:
        return RateLimited(message, retry_after=retry_after, **common)
    if status_code >= 500:
        return ServerError(message, **common)
    return _BY_STATUS.get(status_code, KeyplaneError)(message, **common)
