"""Paths that a parameterised path would otherwise swallow.

``/v1/users/info`` answers GET only, but ``DELETE /v1/users/info`` also matches
``DELETE /v1/users/{uid}`` and used to answer 404 ``UserNotFound`` for a user called
"info"; likewise ``GET /v1/apiKeys/verify`` and ``GET /v1/apiKeys/{uid}``. A method that a
path does not support answers 405 with ``Allow``, so a guard route is put in front for
each fixed path and each method that only a parameterised route would take.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NoReturn

from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route

from keyplane.kit.errors import METHOD_GUARD_ROUTE, MethodNotAllowed


def _guard(path: str, allowed: str, methods: set[str]) -> Route:
    async def method_not_allowed(_request: Request) -> NoReturn:
        raise MethodNotAllowed(allowed)

    return Route(
        path,
        method_not_allowed,
        methods=sorted(methods),
        name=METHOD_GUARD_ROUTE,
        include_in_schema=False,
    )


def _takes(route: RouteContext, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    return route.matches(scope)[0] is Match.FULL


def guard_fixed_paths(app: FastAPI) -> None:
    routes = [route for route in iter_route_contexts(app.router.routes) if route.methods]
    fixed: dict[str, set[str]] = defaultdict(set)
    parameterised: list[RouteContext] = []
    for route in routes:
        path = route.path_format
        if path is None:
            continue
        if "{" in path:
            parameterised.append(route)
        else:
            fixed[path].update(route.methods or ())
    guards: list[BaseRoute] = []
    for path, own_methods in fixed.items():
        swallowed = {
            method
            for route in parameterised
            for method in (route.methods or set()) - own_methods - {"HEAD"}
            if _takes(route, method, path)
        }
        if swallowed:
            guards.append(_guard(path, ", ".join(sorted(own_methods)), swallowed))
    app.router.routes[:0] = guards
