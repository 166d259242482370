"""The Add New and Edit forms of an API key and its page, in My API Keys and Tenant
Settings > API Keys (one set of pages, two scopes)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import ValidationError

from keyplane.api_keys import leaks
from keyplane.api_keys import service as api_keys
from keyplane.api_keys.restrictions import of_key
from keyplane.api_keys.schemas import ApiKeyCreate, ApiKeyUpdate
from keyplane.auth.principal import Principal
from keyplane.console import api_key_restriction_forms as restriction_form
from keyplane.console import api_key_restrictions as restriction_view
from keyplane.console.api_key_restriction_forms import RestrictionErrors, RestrictionInputs
from keyplane.console.api_key_scopes import TENANT, USER, Scope, active_users, scope_of
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, KeyplaneError, ValidationFailed
from keyplane.kit.keys import hint_display
from keyplane.kit.problems import describe_problem
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey, Role, User
from keyplane.runtime import RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PRESET_DAYS = ("7", "30", "60", "90")
CsrfToken = Annotated[str, Form()]


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
    restrictions = await restriction_view.form_context(
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
            users=await active_users(session, principal) if choosing_owner else [],
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
    scope = scope_of(request)
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
    scope = scope_of(request)
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
    scope = scope_of(request)
    scope.check(principal)
    key, owner = await api_keys.get_api_key(session, principal, uid)
    details = await restriction_view.detail_context(runtime, key, utcnow())
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
    scope = scope_of(request)
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
    scope = scope_of(request)
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
    # limits does not send them back (api_key_restriction_forms' docstring).
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


for _scope_ in (USER, TENANT):
    base = _scope_.base_url
    # Registered before "{uid}", which would take "new" for a key's uid.
    router.add_api_route(f"{base}/new", new_key_form, methods=["GET"])
    router.add_api_route(f"{base}/new", create_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}", show_key, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/edit", edit_key_form, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/edit", update_key, methods=["POST"])
