"""The API key table of My API Keys and Tenant Settings > API Keys: filters, sorting and
pages."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from keyplane.api_keys import service as api_keys
from keyplane.api_keys.repository import ApiKeyFilters, ApiKeyOrder
from keyplane.auth.principal import Principal
from keyplane.console import api_key_restrictions as restriction_view
from keyplane.console.api_key_scopes import TENANT, USER, Scope, active_users, scope_of
from keyplane.console.routing import ConsoleRoute
from keyplane.console.session import ConsolePrincipal
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.models import ApiKeyState

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25


def _sort_url(scope: Scope, filters: dict[str, str], column: str) -> str:
    direction = "desc" if filters["sort"] == column and filters["dir"] == "asc" else "asc"
    query = {**filters, "sort": column, "dir": direction}
    return f"{scope.base_url}?{urlencode({k: v for k, v in query.items() if v})}"


def _page(
    scope: Scope, filters: dict[str, str], offset: int, shown: int, total: int
) -> dict[str, Any]:
    def url(start: int) -> str:
        query = {k: v for k, v in {**filters, "offset": str(start)}.items() if v and v != "0"}
        return f"{scope.base_url}?{urlencode(query)}" if query else scope.base_url

    return {
        "first": offset + 1 if shown else 0,
        "last": offset + shown,
        "total": total,
        "previous_url": url(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next_url": url(offset + PAGE_SIZE) if offset + shown < total else None,
    }


async def _list_page(
    request: Request,
    scope: Scope,
    principal: Principal,
    session: DbSession,
    user: str,
    state: str,
    sort: str,
    direction: str,
    offset: int,
) -> Response:
    scope.check(principal)
    order = ApiKeyOrder(sort) if sort in ApiKeyOrder._value2member_map_ else ApiKeyOrder.CREATED
    descending = direction != "asc"
    shown_state = ApiKeyState(state) if state in ApiKeyState._value2member_map_ else None
    filters = ApiKeyFilters(
        user_uid=principal.user_uid if scope is USER else (user or None),
        state=shown_state,
        order=order,
        descending=descending,
    )
    rows, total = await api_keys.list_api_keys(session, principal, filters, offset, PAGE_SIZE)
    shown_filters = {
        "user": user if scope is TENANT else "",
        "state": shown_state.value if shown_state else "",
        "sort": order.value,
        "dir": "desc" if descending else "asc",
    }
    columns = [("name", "Name"), ("key", "Key"), ("description", "Description")]
    if scope is TENANT:
        columns.append(("user", "User Name"))
    columns += [
        ("expiry", "Expiration Date"),
        ("state", "Active"),
        ("lastUsed", "Last Used"),
        ("created", "Created"),
    ]
    return render(
        request,
        "api_keys/list.html",
        scope.context(
            heading=scope.heading,
            rows=rows,
            users=await active_users(session, principal) if scope is TENANT else [],
            filters=shown_filters,
            columns=columns,
            sortable={"name", "user", "expiry", "lastUsed", "created"},
            states=[(state.value, state.value.capitalize()) for state in ApiKeyState],
            sort_url=lambda column: _sort_url(scope, shown_filters, column),
            restriction_summary=restriction_view.key_summary,
            page=_page(scope, shown_filters, offset, len(rows), total),
        ),
        principal=principal,
    )


async def list_keys(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    user: str = "",
    state: str = "",
    sort: str = "created",
    dir: str = "desc",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    return await _list_page(
        request, scope_of(request), principal, session, user, state, sort, dir, offset
    )


for _scope_ in (USER, TENANT):
    router.add_api_route(_scope_.base_url, list_keys, methods=["GET"])
