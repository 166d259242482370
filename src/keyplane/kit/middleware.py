"""Request plumbing in front of every route (plain ASGI: no per-request task overhead)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from email.message import Message as MimeHeader
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.kit.client_address import ClientAddressResolver

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
# For responses that set no policy of their own (the JSON API, redirects): they load
# nothing and are framed by nobody. Console pages set a fuller one.
_DEFAULT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Strings (whose brackets do not count) and brackets; possessive, so no backtracking.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit``, found without parsing."""
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def _loggable_path(path: str) -> str:
    # Palette puts the session token in this path; it must not reach the access log.
    for prefix in _REDACTED_PATH_PREFIXES:
        if path.startswith(prefix):
            return prefix + "[redacted]"
    return path


class RequestContextMiddleware:
    """Gives each request a reference (the ``ref`` of error bodies and ``X-Request-Id``)
    and its client address, refuses credentials in the query string, bodies that are too
    large or JSON nested too deep, adds security headers, and writes one access-log line
    without the query string (which may hold secrets a client put there by mistake)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_json_depth: int = 32,
        client_address: ClientAddressResolver | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.client_address = client_address or ClientAddressResolver()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        address = self.client_address.remember(scope)
        started = time.perf_counter()
        status_holder = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(_SECURITY_HEADERS)
                if not any(name.lower() == _DEFAULT_CSP[0] for name, _ in headers):
                    headers.append(_DEFAULT_CSP)
                message["headers"] = headers
            await send(message)

        try:
            if self._has_key_in_query(scope):
                await self._refuse(send_with_id, request_id, 400, "ApiKeyInQuery", _KEY_IN_QUERY)
            elif self._declared_length(scope) > self.max_body_bytes:
                await self._refuse(send_with_id, request_id, 413, "PayloadTooLarge", _TOO_LARGE)
            elif self._parsed_as_json(scope):
                body = await self._read_body(receive)
                if body is None:
                    await self._refuse(send_with_id, request_id, 413, "PayloadTooLarge", _TOO_LARGE)
                elif json_nesting_exceeds(body, self.max_json_depth):
                    await self._refuse(
                        send_with_id,
                        request_id,
                        400,
                        "JsonTooDeep",
                        f"The request body nests arrays and objects more than "
                        f"{self.max_json_depth} levels deep; no request needs that many.",
                    )
                else:
                    await self.app(scope, self._replay(body, receive), send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            access_logger.info(
                '%s "%s %s" %d %.1fms ref=%s',
                address or "-",
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

    @staticmethod
    def _parsed_as_json(scope: Scope) -> bool:
        """Whether FastAPI would parse this body as JSON: no content type, or
        ``application/json`` or ``application/*+json``."""
        if scope["method"] in _METHODS_WITHOUT_BODY:
            return False
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                header = MimeHeader()
                header["content-type"] = value.decode("latin-1")
                subtype = header.get_content_subtype()
                return header.get_content_maintype() == "application" and (
                    subtype == "json" or subtype.endswith("+json")
                )
        return True

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (it is small: at most ``max_body_bytes``), None past that."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        """Hands the app the body already read, then whatever the server sends next."""
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

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
