"""My API Keys and Tenant Settings > API Keys: one set of pages, two scopes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import ValidationError

from keyplane.api_keys import leaks
from keyplane.api_keys import service as api_keys
from keyplane.api_keys.repository import ApiKeyFilters, ApiKeyOrder
from keyplane.api_keys.restrictions import of_key
from keyplane.api_keys.schemas import ApiKeyCreate, ApiKeyUpdate
from keyplane.auth import policy
from keyplane.auth.principal import Principal
from keyplane.console import api_key_restrictions as restriction_form
from keyplane.console.api_key_restrictions import RestrictionErrors, RestrictionInputs
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, Forbidden, KeyplaneError, ValidationFailed
from keyplane.kit.keys import hint_display
from keyplane.kit.problems import describe_problem
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey, ApiKeyState, Role, User
from keyplane.runtime import Runtime, RuntimeDep
from keyplane.users import service as users

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25
PRESET_DAYS = ("7", "30", "60", "90")
CsrfToken = Annotated[str, Form()]


@dataclass(frozen=True)
class Scope:
    name: str
    base_url: str
    heading: str

    def check(self, principal: Principal) -> None:
        # A verifier has no keys to manage: even the empty "new key" form is refused.
        policy.require_account_access(principal)
        if self.name == "tenant" and not principal.is_tenant_admin:
            raise Forbidden("Only tenant admins can open Tenant Settings.")

    def context(self, **values: Any) -> dict[str, Any]:
        section = "api-keys" if self.name == "tenant" else None
        return {"scope": self.name, "base_url": self.base_url, "section": section, **values}


USER = Scope("user", "/my/api-keys", "My API Keys")
TENANT = Scope("tenant", "/tenant/settings/api-keys", "API Keys")
SCOPES = {"my/api-keys": USER, "tenant/settings/api-keys": TENANT}


async def _active_users(session: DbSession, principal: Principal) -> list[User]:
    found, _total = await users.list_users(session, principal, 0, None)
    return [user for user in found if user.is_active]


def _form_errors(exc: ValidationError) -> dict[str, str]:
    names = {"metadata": "name", "name": "name", "annotations": "description", "spec": "expiry"}
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        field = (
            "description"
            if "description" in location
            else "expiry"
            if "expiry" in location
            else names.get(location[-1] if location else "", "name")
        )
        label = {"name": "Name", "description": "Description", "expiry": "Expiration"}[field]
        errors.setdefault(field, f"{label} {describe_problem(error)}.")
    return errors


def _error_field(exc: KeyplaneError) -> str:
    field = (exc.details or {}).get("field", "")
    return restriction_form.error_field(exc) or {
        "metadata.name": "name",
        "spec.expiry": "expiry",
        "spec.userUid": "user",
    }.get(field, "form")


FormProblem = ValidationError | ValidationFailed | Conflict | RestrictionErrors


def _errors(exc: FormProblem) -> dict[str, str]:
    if isinstance(exc, RestrictionErrors):
        return exc.errors
    if isinstance(exc, ValidationError):
        return _form_errors(exc)
    return {_error_field(exc): exc.message}


def _expiry(choice: str, custom_date: str, now: datetime) -> datetime | None:
    """The form's Expiration Date as a time: a preset, or the end of a chosen day (UTC)."""
    if choice in PRESET_DAYS:
        return now + timedelta(days=int(choice))
    if choice == "custom":
        try:
            day = datetime.strptime(custom_date, "%Y-%m-%d").date()
        except ValueError:
            raise ValidationFailed(
                "Pick a date for the custom expiration.", details={"field": "spec.expiry"}
            ) from None
        return datetime.combine(day, time(23, 59, 59), tzinfo=now.tzinfo)
    if choice == "keep":
        return None
    raise ValidationFailed("Choose an expiration date.", details={"field": "spec.expiry"})


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
            users=await _active_users(session, principal) if scope is TENANT else [],
            filters=shown_filters,
            columns=columns,
            sortable={"name", "user", "expiry", "lastUsed", "created"},
            states=[(state.value, state.value.capitalize()) for state in ApiKeyState],
            sort_url=lambda column: _sort_url(scope, shown_filters, column),
            restriction_summary=restriction_form.key_summary,
            page=_page(scope, shown_filters, offset, len(rows), total),
        ),
        principal=principal,
    )


def _scope(request: Request) -> Scope:
    path = request.url.path.strip("/")
    for prefix, scope in SCOPES.items():
        if path.startswith(prefix):
            return scope
    raise KeyError(path)


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
        request, _scope(request), principal, session, user, state, sort, dir, offset
    )


async def _render_form(
    request: Request,
    scope: Scope,
    principal: Principal,
    session: DbSession,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    inputs: RestrictionInputs,
    key: ApiKey | None = None,
    owner: User | None = None,
    status_code: int = 200,
) -> Response:
    """The Add New form (``key`` None) or the Edit form, with what was typed."""
    editing = key is not None
    if key is not None and owner is not None:
        owner_role: Role | None = Role(owner.role)
    else:
        # The tenant's form chooses the owner: every scope is offered, with who may have it.
        owner_role = principal.role if scope is USER else None
    restrictions = await restriction_form.form_context(
        session,
        principal,
        inputs,
        errors,
        owner_role=owner_role,
        current=of_key(key) if key is not None else None,
    )
    choosing_owner = scope is TENANT and not editing
    return render(
        request,
        "api_keys/form.html",
        scope.context(
            heading="Edit API key" if editing else "Add New API key",
            submit_label="Save" if editing else "Generate",
            editing=editing,
            values=values,
            errors=errors,
            users=await _active_users(session, principal) if choosing_owner else [],
            show_user=choosing_owner,
            action=f"{scope.base_url}/{key.uid}/edit" if key else f"{scope.base_url}/new",
            cancel_url=scope.base_url,
            current_expiry=key.expires_at if key else None,
            **restrictions,
        ),
        principal=principal,
        status_code=status_code,
    )


async def new_key_form(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    name: Annotated[str, Query(max_length=200)] = "",
    description: Annotated[str, Query(max_length=2000)] = "",
    user: Annotated[str, Query(max_length=64)] = "",
    expiry: Annotated[str, Query(max_length=16)] = "30",
    custom_date: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    """The form, optionally filled in (after a new login interrupted a submission)."""
    scope = _scope(request)
    scope.check(principal)
    values = {
        "name": name,
        "description": description,
        "user": user or principal.user_uid,
        "expiry": expiry,
        "custom_date": custom_date,
    }
    return await _render_form(
        request, scope, principal, session, values=values, errors={}, inputs=RestrictionInputs()
    )


async def create_key(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
    expiry: Annotated[str, Form()] = "",
    custom_date: Annotated[str, Form()] = "",
) -> Response:
    scope = _scope(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    values = {
        "name": name,
        "description": description,
        "user": user or principal.user_uid,
        "expiry": expiry,
        "custom_date": custom_date,
    }
    owner_uid = values["user"] if scope is TENANT else principal.user_uid
    inputs = RestrictionInputs.from_form(await request.form())
    restrictions, errors = restriction_form.for_create(inputs, principal)
    try:
        expires_at = _expiry(expiry, custom_date, utcnow())
        body = ApiKeyCreate.model_validate(
            {
                "metadata": {"name": name, "annotations": {"description": description}},
                "spec": {"expiry": rfc3339(expires_at) if expires_at else None},
            }
        )
        if errors:
            raise RestrictionErrors(errors)
        key, owner, value = await api_keys.create_api_key(
            session,
            runtime,
            principal,
            name=body.metadata.name,
            description=body.metadata.annotations.description,
            expires_at=body.spec.expiry,
            user_uid=owner_uid,
            restrictions=restrictions,
        )
    except (ValidationError, ValidationFailed, Conflict, RestrictionErrors) as exc:
        return await _render_form(
            request,
            scope,
            principal,
            session,
            values=values,
            errors={**errors, **_errors(exc)},
            inputs=inputs,
            status_code=409 if isinstance(exc, Conflict) else 400,
        )
    return render(
        request,
        "api_keys/created.html",
        scope.context(
            name=key.name,
            owner=owner.full_name if owner.uid != principal.user_uid else "",
            value=value,
            hint=hint_display(key.key_hint),
        ),
        principal=principal,
        status_code=201,
    )


async def show_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> Response:
    """Everything about one key: its restrictions, and how often its rate limits refused."""
    scope = _scope(request)
    scope.check(principal)
    key, owner = await api_keys.get_api_key(session, principal, uid)
    details = await restriction_form.detail_context(runtime, key, utcnow())
    sightings = await leaks.latest_sightings(session, principal, key)
    return render(
        request,
        "api_keys/detail.html",
        scope.context(heading=key.name, key=key, owner=owner, sightings=sightings, **details),
        principal=principal,
    )


async def edit_key_form(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    name: Annotated[str | None, Query(max_length=200)] = None,
    description: Annotated[str | None, Query(max_length=2000)] = None,
    expiry: Annotated[str, Query(max_length=16)] = "keep",
    custom_date: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    scope = _scope(request)
    scope.check(principal)
    key, owner = await api_keys.get_api_key(session, principal, uid)
    values = {
        "name": key.name if name is None else name,
        "description": key.description if description is None else description,
        "expiry": expiry,
        "custom_date": custom_date,
    }
    inputs = RestrictionInputs.of(of_key(key))
    return await _render_form(
        request,
        scope,
        principal,
        session,
        values=values,
        errors={},
        inputs=inputs,
        key=key,
        owner=owner,
    )


async def update_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    expiry: Annotated[str, Form()] = "keep",
    custom_date: Annotated[str, Form()] = "",
) -> Response:
    scope = _scope(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    key, owner = await api_keys.get_api_key(session, principal, uid)
    values = {
        "name": name,
        "description": description,
        "expiry": expiry,
        "custom_date": custom_date,
    }
    inputs = RestrictionInputs.from_form(await request.form())
    # Only what the form changes: a plain user renaming a key a tenant admin gave rate
    # limits does not send them back (api_key_restrictions' docstring).
    restrictions, errors = restriction_form.for_update(inputs, principal, of_key(key))
    try:
        expires_at = _expiry(expiry, custom_date, utcnow())
        body = ApiKeyUpdate.model_validate(
            {
                "metadata": {"name": name, "annotations": {"description": description}},
                "spec": {"expiry": rfc3339(expires_at) if expires_at else None},
            }
        )
        if errors:
            raise RestrictionErrors(errors)
        await api_keys.update_api_key(
            session,
            runtime,
            principal,
            uid,
            name=body.metadata.name,
            description=body.metadata.annotations.description
            if body.metadata.annotations
            else None,
            expires_at=body.spec.expiry,
            restrictions=restrictions,
        )
    except (ValidationError, ValidationFailed, Conflict, RestrictionErrors) as exc:
        return await _render_form(
            request,
            scope,
            principal,
            session,
            values=values,
            errors={**errors, **_errors(exc)},
            inputs=inputs,
            key=key,
            owner=owner,
            status_code=409 if isinstance(exc, Conflict) else 400,
        )
    return redirect_with_flash(request, scope.base_url, f"API key “{body.metadata.name}” saved.")


async def _change_state(
    request: Request,
    uid: str,
    principal: Principal,
    session: DbSession,
    runtime: Runtime,
    csrf_token: str,
    active: bool,
    confirm_leaked: bool = False,
) -> Response:
    scope = _scope(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    try:
        key = await api_keys.set_api_key_active(
            session, principal, uid, active, confirm_leaked=confirm_leaked
        )
    except Conflict as exc:
        if exc.code == "ApiKeyLeaked" and principal.is_tenant_admin and not confirm_leaked:
            # Nothing changed: ask the admin, who alone may put a leaked key back to work.
            key, owner = await api_keys.get_api_key(session, principal, uid)
            return render(
                request,
                "api_keys/confirm_reactivate_leaked.html",
                scope.context(key=key, owner=owner),
                principal=principal,
                status_code=409,
            )
        return redirect_with_flash(request, scope.base_url, exc.message, "error")
    verb = "re-activated" if active else "revoked"
    return redirect_with_flash(request, scope.base_url, f"API key “{key.name}” {verb}.")


async def revoke_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    return await _change_state(request, uid, principal, session, runtime, csrf_token, False)


async def reactivate_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    confirm_leaked: Annotated[str, Form()] = "",
) -> Response:
    return await _change_state(
        request, uid, principal, session, runtime, csrf_token, True, confirm_leaked == "yes"
    )


async def confirm_delete(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    scope = _scope(request)
    scope.check(principal)
    key, owner = await api_keys.get_api_key(session, principal, uid)
    return render(
        request,
        "api_keys/confirm_delete.html",
        scope.context(key=key, owner=owner),
        principal=principal,
    )


async def delete_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    scope = _scope(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    key, _owner = await api_keys.get_api_key(session, principal, uid)
    await api_keys.delete_api_key(session, principal, uid)
    return redirect_with_flash(request, scope.base_url, f"API key “{key.name}” deleted.")


for _scope_ in (USER, TENANT):
    base = _scope_.base_url
    router.add_api_route(base, list_keys, methods=["GET"])
    router.add_api_route(f"{base}/new", new_key_form, methods=["GET"])
    router.add_api_route(f"{base}/new", create_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}", show_key, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/edit", edit_key_form, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/edit", update_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}/revoke", revoke_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}/reactivate", reactivate_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}/delete", confirm_delete, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/delete", delete_key, methods=["POST"])
