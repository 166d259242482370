"""Tenant Settings > Audit Logs: the tenant's events, newest first, filtered, and as CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.audit.repository import AuditFilters
from keyplane.auth.principal import Principal
from keyplane.console.routing import ConsoleRoute
from keyplane.console.session import ConsolePrincipal, require_tenant_admin
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import ValidationFailed
from keyplane.kit.pagination import PageRequest
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import AuditEvent
from keyplane.users import service as users

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/tenant/settings/audit-logs"
CSV_URL = "/tenant/settings/audit-logs.csv"
PAGE_SIZE = 25
# A download is built in memory: past this many events, narrow the time range.
CSV_MAX_ROWS = 10_000

ACTION_LABELS: dict[str, str] = {
    Action.API_KEY_CREATE: "API key created",
    Action.API_KEY_UPDATE: "API key edited",
    Action.API_KEY_REVOKE: "API key revoked",
    Action.API_KEY_REACTIVATE: "API key re-activated",
    Action.API_KEY_DELETE: "API key deleted",
    Action.API_KEY_ROTATE: "API key rotated",
    Action.API_KEY_LEAK_REPORTED: "API key reported leaked",
    Action.USER_CREATE: "User added",
    Action.USER_UPDATE: "User changed",
    Action.USER_DEACTIVATE: "User deactivated",
    Action.USER_REACTIVATE: "User re-activated",
    Action.USER_DELETE: "User deleted",
    Action.TENANT_CREATE: "Tenant created",
    Action.RESOURCE_LIMIT_UPDATE: "Resource limit changed",
    Action.TENANT_POLICY_UPDATE: "API key policy changed",
    Action.WEBHOOK_ENDPOINT_CREATE: "Webhook endpoint added",
    Action.WEBHOOK_ENDPOINT_UPDATE: "Webhook endpoint changed",
    Action.WEBHOOK_ENDPOINT_DELETE: "Webhook endpoint deleted",
    Action.WEBHOOK_ENDPOINT_ROTATE_SECRET: "Webhook signing secret rotated",
    Action.WEBHOOK_ENDPOINT_DISABLE: "Webhook endpoint disabled (failing)",
    Action.PERMISSION_CREATE: "Permission defined",
    Action.PERMISSION_DELETE: "Permission deleted",
    Action.PERMISSION_ROLE_CREATE: "Permission role defined",
    Action.PERMISSION_ROLE_UPDATE: "Permission role changed",
    Action.PERMISSION_ROLE_DELETE: "Permission role deleted",
    Action.LOGIN: "Logged in",
    Action.LOGOUT: "Logged out",
    Action.AUTH_RATE_LIMITED: "Too many failed logins or keys",
    Action.LOGIN_LOCKOUT: "Account locked",
}
RESOURCE_LABELS: dict[str, str] = {
    ResourceKind.API_KEY: "API key",
    ResourceKind.USER: "User",
    ResourceKind.TENANT: "Tenant",
    ResourceKind.RESOURCE_LIMIT: "Resource limit",
    ResourceKind.PERMISSION: "Permission",
    ResourceKind.PERMISSION_ROLE: "Permission role",
    ResourceKind.TENANT_POLICY: "API key policy",
    ResourceKind.WEBHOOK_ENDPOINT: "Webhook endpoint",
}
CSV_HEADER = [
    "Time (UTC)",
    "Actor",
    "Actor email",
    "Actor type",
    "Auth method",
    "Action",
    "Action type",
    "Resource kind",
    "Resource UID",
    "Resource name",
    "Outcome",
    "Client address",
    "Message",
]
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Filters:
    """What the filter form sent, as typed, and what it means for the query."""

    user: str
    action: str
    start: str
    end: str
    errors: dict[str, str]
    query: AuditFilters

    def params(self) -> dict[str, str]:
        values = {"user": self.user, "action": self.action, "from": self.start, "to": self.end}
        return {name: value for name, value in values.items() if value}

    def url(self, base: str, offset: int = 0) -> str:
        query = {**self.params(), **({"offset": str(offset)} if offset else {})}
        return f"{base}?{urlencode(query)}" if query else base


def _day(value: str, field: str, label: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        errors[field] = f"Enter the {label} date as YYYY-MM-DD."
        return None


def parse_filters(user: str, action: str, start: str, end: str) -> Filters:
    """From and To are whole days in UTC, both included."""
    user, action, start, end = user.strip(), action.strip(), start.strip(), end.strip()
    errors: dict[str, str] = {}
    if action and action not in ACTION_LABELS:
        errors["action"] = "Choose an action from the list."
    first = _day(start, "from", "From", errors)
    last = _day(end, "to", "To", errors)
    if first and last and first > last:
        errors["to"] = "The To date must not be before the From date."
    query = AuditFilters(
        user_uid=user or None,
        action=action or None,
        start_time=datetime.combine(first, time(0), tzinfo=UTC) if first else None,
        end_time=(
            datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
            if last and last < date.max
            else None
        ),
    )
    return Filters(user, action, start, end, errors, query)


def actor_label(event: AuditEvent) -> str:
    if event.actor_type == "system":
        return f"{event.actor_name or 'Keyplane'} (system)"
    return event.actor_name or event.actor_email or "Unknown"


def resource_label(event: AuditEvent) -> str:
    kind = RESOURCE_LABELS.get(event.resource_kind, event.resource_kind)
    return f"{kind} {event.resource_name}".strip()


def _pager(filters: Filters, offset: int, shown: int, total: int) -> dict[str, Any]:
    return {
        "first": offset + 1 if shown else 0,
        "last": offset + shown,
        "total": total,
        "previous_url": filters.url(BASE_URL, max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next_url": filters.url(BASE_URL, offset + PAGE_SIZE) if offset + shown < total else None,
    }


async def list_events(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    user: str = "",
    action: str = "",
    start: Annotated[str, Query(alias="from")] = "",
    end: Annotated[str, Query(alias="to")] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    require_tenant_admin(principal)
    filters = parse_filters(user, action, start, end)
    tenant_users, _total = await users.list_users(session, principal, 0, None)
    rows: list[AuditEvent] = []
    total = 0
    if not filters.errors:
        page = PageRequest(paged=True, limit=PAGE_SIZE, offset=offset)
        found, total = await audit.list_audit_events(
            session, principal, filters.query, page, PAGE_SIZE
        )
        rows = list(found)
    return render(
        request,
        "audit/list.html",
        {
            "scope": "tenant",
            "section": "audit-logs",
            "base_url": BASE_URL,
            "filters": filters,
            "errors": filters.errors,
            "users": tenant_users,
            "actions": list(ACTION_LABELS.items()),
            "action_labels": ACTION_LABELS,
            "actor_label": actor_label,
            "resource_label": resource_label,
            "rows": rows,
            "page": _pager(filters, offset, len(rows), total),
            "csv_url": filters.url(CSV_URL),
            "csv_max_rows": CSV_MAX_ROWS,
        },
        principal=principal,
        status_code=400 if filters.errors else 200,
    )


def _cell(value: str) -> str:
    """Text a spreadsheet shows as text, never runs as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def events_csv(events: list[AuditEvent]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for event in events:
        writer.writerow(
            _cell(value)
            for value in (
                rfc3339(event.occurred_at),
                event.actor_name,
                event.actor_email,
                event.actor_type,
                event.auth_method,
                event.action,
                event.action_type,
                event.resource_kind,
                event.resource_uid,
                event.resource_name,
                event.outcome,
                event.client_address,
                event.message,
            )
        )
    return buffer.getvalue()


def _filename(principal: Principal) -> str:
    tenant = re.sub(r"[^A-Za-z0-9._-]+", "-", principal.tenant_name).strip("-.") or "tenant"
    return f"keyplane-audit-{tenant}-{utcnow():%Y%m%dT%H%M%SZ}.csv"


async def download_csv(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    user: str = "",
    action: str = "",
    start: Annotated[str, Query(alias="from")] = "",
    end: Annotated[str, Query(alias="to")] = "",
) -> Response:
    require_tenant_admin(principal)
    filters = parse_filters(user, action, start, end)
    if filters.errors:
        raise ValidationFailed(" ".join(filters.errors.values()))
    page = PageRequest(paged=True, limit=CSV_MAX_ROWS, offset=0)
    events, total = await audit.list_audit_events(
        session, principal, filters.query, page, CSV_MAX_ROWS
    )
    return Response(
        events_csv(list(events)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(principal)}"',
            "Cache-Control": "no-store",
            # How many events matched: more than the rows when the download was capped.
            "X-Total-Count": str(total),
        },
    )


router.add_api_route(BASE_URL, list_events, methods=["GET"])
router.add_api_route(CSV_URL, download_csv, methods=["GET"])
