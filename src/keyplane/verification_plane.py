"""The verification plane: the two requests a tenant's services send on every call of
theirs, answered without FastAPI's routing and dependency solving.

``POST /v1/apiKeys/verify`` and ``GET /v1/users/info`` are matched on
their exact method and path; every other request, and these when served under a root path,
goes on to the FastAPI app unchanged. The plane sits inside ``RequestContextMiddleware``
and in front of FastAPI's whole middleware stack (``keyplane.app.KeyplaneApp``), so a
request reaches it only after the same refusals (a key in the query string, a body too
large or too deep, unstorable characters) and leaves it with the same request id, security
headers and access-log line, without passing FastAPI's server-error, telemetry and
body-limit layers on the way.

One rule, two doors: the plane does only what FastAPI would have done around the
endpoint (read the body the way FastAPI reads it, authenticate with the same function as
the ``CurrentPrincipal`` dependency, validate the body with the route's own model) and then
calls the route's own endpoint function. Errors are rendered by the app's own exception
handlers, so bodies, codes and headers are the same byte for byte. The routes stay
registered with FastAPI, which still documents them (and serves them when
``KEYPLANE_FAST_PATH_ENABLED`` is false). ``tests/test_verification_plane.py`` sends the
same requests through both doors and compares the answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyplane.api_keys import endpoints as api_keys
from keyplane.api_keys.verification_schemas import ApiKeyVerify, verification_json
from keyplane.auth.dependencies import authenticate_request, request_credentials
from keyplane.auth.principal import Principal
from keyplane.kit.middleware import decode_json_text, is_json_content_type
from keyplane.runtime import Runtime
from keyplane.users import endpoints as users

# A handler answers with the JSON body of a 200.
Handler = Callable[[Request], Awaitable[bytes]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

# The model's own validator: what FastAPI's validation of the body field comes to, without
# a TypeAdapter's wrapping (a JSON body holds no objects with attributes to read).
_VERIFY_BODY = ApiKeyVerify.__pydantic_validator__
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class _Missing:
    """No body at all (FastAPI's ``Undefined``): the body field is then "missing"."""


_MISSING = _Missing()


async def _principal(request: Request, operation_id: str) -> tuple[Principal, Runtime]:
    runtime: Runtime = request.app.state.runtime
    api_key, authorization = request_credentials(request)
    principal = await authenticate_request(request, runtime, api_key, authorization, operation_id)
    return principal, runtime


def _json(model: BaseModel) -> bytes:
    # What FastAPI sends for a route's response model: Pydantic's own JSON.
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


async def _user_info(request: Request) -> bytes:
    principal, _runtime = await _principal(request, "v1UsersInfoGet")
    return _json(await users.get_user_info(principal))


async def _verify(request: Request) -> bytes:
    # FastAPI's order: the body is read (and a JSON syntax error refused) before any
    # dependency, the credential is checked next, and the body's fields are validated last.
    body = await _read_json_body(request)
    principal, runtime = await _principal(request, "v1ApiKeysVerify")
    verify = _validated_verify(body)
    return verification_json(await api_keys.verification_of(verify, principal, runtime, request))


async def _read_json_body(request: Request) -> Any:
    """The body as FastAPI's request handler reads it for a JSON body field (strict
    content type): parsed only when declared JSON, else the raw bytes."""
    try:
        body_bytes = await _body(request)
        if not body_bytes:
            return _MISSING
        content_type = _first_header(request.scope, b"content-type")
        if content_type and is_json_content_type(content_type):
            # Decoded as json.loads decodes bytes (the request middleware's check did it
            # already for this body), with its shortcut for ASCII.
            text = decode_json_text(body_bytes)
            return json.loads(body_bytes if text is None else text)
        return body_bytes
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc


def _first_header(scope: Scope, name: bytes) -> str | None:
    """``request.headers.get(name)`` without building the header mapping."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _body(request: Request) -> bytes:
    """The whole body, read as Starlette's ``Request.body`` reads it (and kept there for
    any later reader), without its stream generator: the request middleware has already
    read it and hands it over in one message."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = request._body = b"".join(chunks)
    return body


def _validated_verify(body: Any) -> ApiKeyVerify:
    if body is _MISSING:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        verify: ApiKeyVerify = _VERIFY_BODY.validate_python(body)
        return verify
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None


def _exception_handler(
    handlers: Mapping[Any, ExceptionHandler], exc: Exception
) -> ExceptionHandler | None:
    """The handler FastAPI would pick: the exception middleware's by class, else the
    catch-all for ``Exception`` that its server-error middleware uses."""
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return handler
    return None


class VerificationPlane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/apiKeys/verify"): _verify,
            # Not HEAD: FastAPI answers it 405 here, and so does the plane, by passing it on.
            ("GET", "/v1/users/info"): _user_info,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self.routes.get((scope["method"], scope["path"]))
            if not scope.get("root_path")
            else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            body = await handler(request)
        except Exception as exc:
            render = _exception_handler(request.app.exception_handlers, exc)
            if render is None:
                raise
            await (await render(request, exc))(scope, receive, send)
            return
        # The headers of Starlette's ``Response`` for a JSON body.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body)), _JSON_CONTENT_TYPE],
            }
        )
        await send({"type": "http.response.body", "body": body})
