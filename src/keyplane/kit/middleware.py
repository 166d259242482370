"""Request plumbing in front of every route (plain ASGI: no per-request task overhead)."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from email.message import Message as MimeHeader
from urllib.parse import parse_qsl, unquote_plus

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyplane.kit.client_address import ClientAddressResolver
from keyplane.kit.logging import direct_sink
from keyplane.kit.metrics import observe_request
from keyplane.kit.text import escape_for_log, has_unstorable, unstorable_json_field

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
# Secrets and the pages that show people's data are never kept by a browser or a proxy;
# static assets (and responses that set their own policy) may be.
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_CACHEABLE_PREFIXES = ("/static/",)
# Strings (whose brackets do not count) and brackets; possessive, so no backtracking.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_UNSTORABLE_MESSAGE = (
    "The request's {where} contains a character that cannot be stored: a NUL or an unpaired "
    "UTF-16 surrogate. Remove it and try again."
)


@functools.lru_cache(maxsize=256)
def content_type_of(value: str) -> str:
    """``type/subtype``, lowercased, as ``email.message`` (and so FastAPI) reads a
    ``Content-Type`` header: parsed once per distinct header value, not per request."""
    header = MimeHeader()
    header["content-type"] = value
    return header.get_content_type()


def is_json_content_type(value: str) -> bool:
    """``application/json`` or ``application/*+json``: what FastAPI parses as JSON."""
    maintype, _, subtype = content_type_of(value).partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def decode_json_text(body: bytes) -> str | None:
    """The body as text, in the encoding JSON allows (UTF-8, -16 or -32, detected as the
    parser detects it), or None when it is not valid in that encoding."""
    # The common case, without detect_encoding's tests: ASCII with no NUL in the first two
    # bytes (the marks of UTF-16 and UTF-32) is UTF-8, and so decodes as ASCII.
    if body.isascii() and b"\x00" not in body[:2]:
        return body.decode("ascii")
    try:
        return body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return None


def json_nesting_exceeds(body: bytes | str, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit``, found without parsing. Bytes
    are decoded first: brackets in UTF-16 are not the ASCII bytes a byte scan looks for."""
    text = body if isinstance(body, str) else decode_json_text(body)
    if text is None:
        return False
    # Each level opens with a bracket: with no more of them than the limit, no need to look.
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        char = token.group()
        if char in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif char in ("]", "}"):
            depth -= 1
    return False


def _loggable_path(path: str) -> str:
    # Palette puts the session token in this path; it must not reach the access log.
    for prefix in _REDACTED_PATH_PREFIXES:
        if path.startswith(prefix):
            return prefix + "[redacted]"
    return escape_for_log(path)


def _unstorable_in_query(scope: Scope) -> str | None:
    """The name of the first query parameter whose name or value holds an unstorable
    character, decoded as Starlette decodes it (``"?"`` when the name itself is bad)."""
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return None
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if has_unstorable(name):
            return "?"
        if has_unstorable(value):
            return name
    return None


def _unstorable_header(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            return str(name.decode("latin-1"))
    return None


def _form_has_unstorable(body: bytes, media_type: str) -> bool:
    if b"\x00" in body:
        return True
    if media_type == "application/x-www-form-urlencoded":
        return has_unstorable(unquote_plus(body.decode("latin-1"), errors="surrogatepass"))
    return False


def _with_common_headers(
    own: Iterable[tuple[bytes, bytes]], request_id: str, cacheable: bool
) -> list[tuple[bytes, bytes]]:
    """A response's headers, then its request id, the security headers, and the default
    policy and caching headers unless it set its own."""
    headers = list(own)
    has_policy = has_cache_control = has_pragma = no_store = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-security-policy":
            has_policy = True
        elif lowered == b"cache-control":
            has_cache_control = True
            no_store = no_store or (name, value) == _NO_STORE[0]
        elif lowered == b"pragma":
            has_pragma = True
    headers.append((b"x-request-id", request_id.encode()))
    headers.extend(_SECURITY_HEADERS)
    if not has_policy:
        headers.append(_DEFAULT_CSP)
    if not cacheable and not has_cache_control:
        headers.extend(_NO_STORE)
    elif not has_pragma and no_store:
        headers.append(_NO_STORE[1])
    return headers


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
        # Request references must be unique, not secret: a random prefix per process and a
        # counter, instead of a system call for fresh randomness on every request.
        self._ref_prefix = secrets.token_hex(4)
        self._ref_counter = itertools.count()

    def _next_ref(self) -> str:
        return f"{self._ref_prefix}{next(self._ref_counter) & 0xFFFFFFFF:08x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._next_ref()
        scope.setdefault("state", {})["request_id"] = request_id
        address = self.client_address.remember(scope)
        started = time.perf_counter()
        status_holder = [500]
        cacheable = scope["path"].startswith(_CACHEABLE_PREFIXES)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = _with_common_headers(
                    message.get("headers", ()), request_id, cacheable
                )
            await send(message)

        try:
            await self._dispatch(scope, receive, send_with_id, request_id)
        finally:
            line = (
                f"{escape_for_log(address or '-')} "
                f'"{escape_for_log(scope["method"])} {_loggable_path(scope["path"])}" '
                f"{status_holder[0]} {(time.perf_counter() - started) * 1000:.1f}ms "
                f"ref={request_id}"
            )
            sink = direct_sink(access_logger)
            if sink is not None:
                sink.enqueue_info(access_logger.name, line)
            else:
                access_logger.info("%s", line)
            observe_request(scope, status_holder[0], started)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Refusals that need no route, in the order a client would fix them; then the app."""
        if self._has_key_in_query(scope):
            await self._refuse(send, request_id, 400, "ApiKeyInQuery", _KEY_IN_QUERY)
            return
        where = self._unstorable_outside_body(scope)
        if where is not None:
            await self._refuse_unstorable(send, request_id, where)
            return
        if self._declared_length(scope) > self.max_body_bytes:
            await self._refuse(send, request_id, 413, "PayloadTooLarge", _TOO_LARGE)
            return
        media_type = self._body_media_type(scope)
        if media_type is None:
            await self.app(scope, self._limited(receive), send)
            return
        body = await self._read_body(receive)
        if body is None:
            await self._refuse(send, request_id, 413, "PayloadTooLarge", _TOO_LARGE)
            return
        if media_type == "json" and body:
            text = decode_json_text(body)
            if text is None:
                await self._refuse(
                    send,
                    request_id,
                    400,
                    "MalformedJson",
                    "The request body is not valid JSON: it must be text in UTF-8 "
                    "(or UTF-16 or UTF-32).",
                )
                return
            if json_nesting_exceeds(text, self.max_json_depth):
                await self._refuse(
                    send,
                    request_id,
                    400,
                    "JsonTooDeep",
                    f"The request body nests arrays and objects more than "
                    f"{self.max_json_depth} levels deep; no request needs that many.",
                )
                return
            field = unstorable_json_field(text)
            if field is not None:
                await self._refuse_unstorable(
                    send, request_id, ("body", field) if field else ("body", None)
                )
                return
        elif media_type in _FORM_TYPES and _form_has_unstorable(body, media_type):
            await self._refuse_unstorable(send, request_id, ("form", None))
            return
        await self.app(scope, self._replay(body, receive), send)

    @staticmethod
    def _unstorable_outside_body(scope: Scope) -> tuple[str, str | None] | None:
        if has_unstorable(scope["path"]):
            return ("path", None)
        parameter = _unstorable_in_query(scope)
        if parameter is not None:
            return ("query", None if parameter == "?" else parameter)
        header = _unstorable_header(scope)
        if header is not None:
            return ("header", header)
        return None

    async def _refuse_unstorable(
        self, send: Send, request_id: str, where: tuple[str, str | None]
    ) -> None:
        source, field = where
        place = {"path": "path", "query": "query string", "header": "headers"}.get(source, "body")
        if field:
            place += f" (field {escape_for_log(field)[:100]})"
        await self._refuse(
            send,
            request_id,
            400,
            "InvalidCharacters",
            _UNSTORABLE_MESSAGE.format(where=place),
            details={"in": source, "field": escape_for_log(field)[:100] if field else None},
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
    def _body_media_type(scope: Scope) -> str | None:
        """How the app will parse this request's body: ``"json"`` when FastAPI would parse
        it as JSON (no content type, ``application/json`` or ``application/*+json``), the
        media type of a form, or None for a body nothing parses (or no body at all)."""
        if scope["method"] in _METHODS_WITHOUT_BODY:
            return None
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                text = value.decode("latin-1")
                if is_json_content_type(text):
                    return "json"
                media_type = content_type_of(text)
                return media_type if media_type in _FORM_TYPES else None
        return "json"

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
    async def _refuse(
        send: Send,
        request_id: str,
        status: int,
        code: str,
        message: str,
        details: dict[str, str | None] | None = None,
    ) -> None:
        body = json.dumps(
            {"code": code, "message": message, "details": details, "ref": request_id}
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
