"""Request plumbing in front of every route (plain ASGI: no per-request task overhead)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("keyplane.access")

_KEY_QUERY_NAMES = frozenset({"apikey", "api_key", "api-key"})
_REDACTED_PATH_PREFIXES = ("/v1/auth/refresh/",)
_KEY_IN_QUERY = (
    "API keys are not accepted in the query string, where they end up in access logs and "
    "browser history: send the key in the ApiKey header instead, and consider revoking this one."
)
_TOO_LARGE = "The request body is too large."
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def _loggable_path(path: str) -> str:
    # Palette puts the session token in this path; it must not reach the access log.
    for prefix in _REDACTED_PATH_PREFIXES:
        if path.startswith(prefix):
            return prefix + "[redacted]"
    return path


class RequestContextMiddleware:
    """Gives each request a reference (the ``ref`` of error bodies and ``X-Request-Id``),
    refuses credentials in the query string, and writes one access-log line without the
    query string (which may hold secrets a client put there by mistake)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(_SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        try:
            if self._has_key_in_query(scope):
                await self._refuse(send_with_id, request_id, 400, "ApiKeyInQuery", _KEY_IN_QUERY)
            elif self._declared_length(scope) > self.max_body_bytes:
                await self._refuse(send_with_id, request_id, 413, "PayloadTooLarge", _TOO_LARGE)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            client = scope.get("client")
            access_logger.info(
                '%s "%s %s" %d %.1fms ref=%s',
                client[0] if client else "-",
                scope["method"],
                _loggable_path(scope["path"]),
                status_holder[0],
                (time.perf_counter() - started) * 1000,
                request_id,
            )

    @staticmethod
    def _has_key_in_query(scope: Scope) -> bool:
        raw = scope.get("query_string", b"")
        if not raw:
            return False
        names = (name.lower() for name, _ in parse_qsl(raw.decode("latin-1"), True))
        return any(name in _KEY_QUERY_NAMES for name in names)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _limited(self, receive: Receive) -> Receive:
        """Counts a body sent without (or with a false) Content-Length as it arrives."""
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI turns anything else raised while reading a body into a 400;
                    # its HTTPException passes through to the 413 handler.
                    raise HTTPException(413, _TOO_LARGE)
            return message

        return limited_receive

    @staticmethod
    async def _refuse(send: Send, request_id: str, status: int, code: str, message: str) -> None:
        body = json.dumps(
            {"code": code, "message": message, "details": None, "ref": request_id}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
