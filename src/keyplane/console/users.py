"""Tenant Settings > Users: the tenant's users, adding one, and deactivating, re-activating
or deleting one, each after a page that says what happens to their API keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import ValidationError

from keyplane.api_keys import service as api_keys
from keyplane.auth.principal import Principal
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import (
    ConsolePrincipal,
    check_csrf,
    clear_session_cookie,
    require_tenant_admin,
)
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, KeyplaneError, ValidationFailed
from keyplane.kit.problems import describe_problem
from keyplane.models import Role, User
from keyplane.runtime import RuntimeDep
from keyplane.users import service as users
from keyplane.users.schemas import UserChanges, UserSpecEntity

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/tenant/settings/users"
PAGE_SIZE = 25
CsrfToken = Annotated[str, Form()]
RETYPE_PASSWORD = "The password is not kept after an error: type it again."  # noqa: S105

ROLE_LABELS = {
    Role.TENANT_ADMIN.value: "Tenant admin",
    Role.USER.value: "User",
    Role.VERIFIER.value: "Verifier",
}
# The roles a tenant admin can give in the console, in the order offered.
ROLE_CHOICES = [(Role.USER.value, "User"), (Role.TENANT_ADMIN.value, "Tenant admin")]

_FIELD_LABELS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "role": "Role",
    "password": "Initial password",
}
_SCHEMA_FIELDS = {
    "emailId": "email",
    "email_id": "email",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "roles": "role",
    "password": "password",
}
_SERVICE_FIELDS = {"spec.password": "password", "spec.roles": "role", "spec.emailId": "email"}


def _context(**values: Any) -> dict[str, Any]:
    return {"scope": "tenant", "section": "users", "base_url": BASE_URL, **values}


def _page(offset: int, shown: int, total: int) -> dict[str, Any]:
    def url(start: int) -> str:
        return f"{BASE_URL}?offset={start}" if start else BASE_URL

    return {
        "first": offset + 1 if shown else 0,
        "last": offset + shown,
        "total": total,
        "previous_url": url(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next_url": url(offset + PAGE_SIZE) if offset + shown < total else None,
    }


async def list_users(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    require_tenant_admin(principal)
    rows, total = await users.list_users(session, principal, offset, PAGE_SIZE)
    key_counts = await api_keys.count_keys_by_owner(session, principal, [u.uid for u in rows])
    return render(
        request,
        "users/list.html",
        _context(
            rows=rows,
            key_counts=key_counts,
            role_labels=ROLE_LABELS,
            page=_page(offset, len(rows), total),
        ),
        principal=principal,
    )


def _form_page(
    request: Request,
    principal: Principal,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    user: User | None = None,
    status_code: int = 200,
) -> Response:
    roles = list(ROLE_CHOICES)
    if user is not None and user.role not in dict(roles):
        # A role the console does not give (a verifier) is shown, and kept unless changed.
        roles.append((user.role, ROLE_LABELS.get(user.role, user.role)))
    return render(
        request,
        "users/form.html",
        _context(
            heading=f"Edit {user.full_name}" if user else "Add user",
            submit_label="Save" if user else "Add user",
            editing=user is not None,
            values=values,
            errors=errors,
            roles=roles,
            action=f"{BASE_URL}/{user.uid}/edit" if user else f"{BASE_URL}/new",
            cancel_url=BASE_URL,
        ),
        principal=principal,
        status_code=status_code,
    )


async def new_user_form(
    request: Request,
    principal: ConsolePrincipal,
    email: Annotated[str, Query(max_length=254)] = "",
    first_name: Annotated[str, Query(max_length=64)] = "",
    last_name: Annotated[str, Query(max_length=64)] = "",
    role: Annotated[str, Query(max_length=32)] = Role.USER.value,
) -> Response:
    """The form, optionally filled in (after a new login interrupted a submission)."""
    require_tenant_admin(principal)
    values = {"email": email, "first_name": first_name, "last_name": last_name, "role": role}
    return _form_page(request, principal, values, {})


def _schema_errors(exc: ValidationError, values: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        field = _SCHEMA_FIELDS.get(location[0] if location else "", "form")
        if field == "email":
            message = (
                "Enter the user's email address."
                if not values["email"].strip()
                else "Enter a valid email address, such as name@example.com."
            )
        else:
            label = _FIELD_LABELS.get(field, "This field")
            message = f"{label} {describe_problem(error)}."
        errors.setdefault(field, message)
    return errors


def _service_errors(exc: KeyplaneError) -> dict[str, str]:
    if exc.code == "UserAlreadyExists":
        return {"email": exc.message}
    field = str((exc.details or {}).get("field", ""))
    return {_SERVICE_FIELDS.get(field, "form"): exc.message}


async def create_user(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    email: Annotated[str, Form()] = "",
    first_name: Annotated[str, Form()] = "",
    last_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = Role.USER.value,
    password: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    # Kept to fill the form in again; the password never is.
    values = {"email": email, "first_name": first_name, "last_name": last_name, "role": role}
    try:
        spec = UserSpecEntity.model_validate(
            {
                "emailId": email,
                "firstName": first_name,
                "lastName": last_name,
                "roles": [role],
                "password": password or None,
            }
        )
        user = await users.create_user(session, runtime, principal, spec)
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = (
            _schema_errors(exc, values)
            if isinstance(exc, ValidationError)
            else _service_errors(exc)
        )
        if password:
            errors.setdefault("password", RETYPE_PASSWORD)
        return _form_page(
            request,
            principal,
            values,
            errors,
            status_code=409 if isinstance(exc, Conflict) else 400,
        )
    return redirect_with_flash(request, BASE_URL, f"User {user.full_name} ({user.email}) added.")


async def edit_user_form(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    email: Annotated[str | None, Query(max_length=254)] = None,
    first_name: Annotated[str | None, Query(max_length=64)] = None,
    last_name: Annotated[str | None, Query(max_length=64)] = None,
    role: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    require_tenant_admin(principal)
    user = await users.get_user(session, principal, uid)
    values = {
        "email": user.email if email is None else email,
        "first_name": user.first_name if first_name is None else first_name,
        "last_name": user.last_name if last_name is None else last_name,
        "role": user.role if role is None else role,
    }
    return _form_page(request, principal, values, {}, user=user)


async def update_user(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    email: Annotated[str, Form()] = "",
    first_name: Annotated[str, Form()] = "",
    last_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    user = await users.get_user(session, principal, uid)
    values = {"email": email, "first_name": first_name, "last_name": last_name, "role": role}
    try:
        changes = UserChanges.model_validate(
            {
                "emailId": email,
                "firstName": first_name,
                "lastName": last_name,
                # Unchanged stays untouched: a role the console does not offer is kept.
                "roles": [role] if role and role != user.role else None,
                "password": password or None,
            }
        )
        user = await users.update_user(session, runtime, principal, uid, changes)
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = (
            _schema_errors(exc, values)
            if isinstance(exc, ValidationError)
            else _service_errors(exc)
        )
        if password:
            errors.setdefault("password", RETYPE_PASSWORD)
        return _form_page(
            request,
            principal,
            values,
            errors,
            user=user,
            status_code=409 if isinstance(exc, Conflict) else 400,
        )
    message = f"{user.full_name} ({user.email}) saved."
    if uid == principal.user_uid and user.role != Role.TENANT_ADMIN.value:
        # No longer a tenant admin: Tenant Settings is closed to them from now on.
        return redirect_with_flash(request, "/my/api-keys", message)
    return redirect_with_flash(request, BASE_URL, message)


@dataclass(frozen=True)
class UserAction:
    """Deactivate, re-activate or delete: a confirmation page, then the change."""

    slug: str
    label: str
    button_class: str
    done: str

    def explain(self, user: User, keys: int, yourself: bool) -> list[str]:
        name = user.full_name
        if self.slug == "deactivate":
            if keys == 0:
                first = f"Deactivating {name} stops them from logging in until re-activated; "
                first += "they have no API keys."
            else:
                which = "their API key" if keys == 1 else f"all {keys} of their API keys"
                first = (
                    f"Deactivating {name} stops {which} from working until re-activated. "
                    "They cannot log in meanwhile."
                )
        elif self.slug == "reactivate":
            if keys == 0:
                first = f"Re-activating {name} lets them log in again; they have no API keys."
            else:
                which = "their API key works" if keys == 1 else f"their {keys} API keys work"
                first = (
                    f"Re-activating {name} lets them log in again, and {which} again, "
                    "except any revoked or expired."
                )
        else:
            if keys == 0:
                first = f"Deleting {name} removes them from the tenant; they have no API keys. "
            else:
                which = "their API key" if keys == 1 else f"their {keys} API keys"
                first = f"Deleting {name} deletes {which}; "
            first += "this cannot be undone. The audit log keeps its records."
        lines = [first]
        if self.slug == "deactivate":
            lines.append(
                "Every session they have now ends at once, on every device, and stays ended "
                "after a re-activation: they log in again."
            )
        if yourself and self.slug != "reactivate":
            lines.append("This is your own account: you will be logged out.")
        return lines


ACTIONS = {
    "deactivate": UserAction("deactivate", "Deactivate", "danger", "deactivated"),
    "reactivate": UserAction("reactivate", "Re-activate", "primary", "re-activated"),
    "delete": UserAction("delete", "Delete", "danger", "deleted"),
}


def _already(action: UserAction, user: User) -> str | None:
    """A change that would change nothing: said plainly instead of recorded as done."""
    if action.slug == "deactivate" and not user.is_active:
        return f"{user.full_name} is already inactive."
    if action.slug == "reactivate" and user.is_active:
        return f"{user.full_name} is already active."
    return None


async def _confirm(
    request: Request, uid: str, principal: Principal, session: DbSession, action: UserAction
) -> Response:
    require_tenant_admin(principal)
    user = await users.get_user(session, principal, uid)
    if (message := _already(action, user)) is not None:
        return redirect_with_flash(request, BASE_URL, message)
    keys = (await api_keys.count_keys_by_owner(session, principal, [uid])).get(uid, 0)
    return render(
        request,
        "users/confirm.html",
        _context(
            user=user,
            action=action,
            explanation=action.explain(user, keys, uid == principal.user_uid),
        ),
        principal=principal,
    )


async def _apply(
    request: Request,
    uid: str,
    principal: Principal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: str,
    action: UserAction,
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    user = await users.get_user(session, principal, uid)
    name = user.full_name
    if (message := _already(action, user)) is not None:
        return redirect_with_flash(request, BASE_URL, message)
    try:
        if action.slug == "delete":
            await users.delete_user(session, principal, uid)
        else:
            changes = UserChanges(is_active=action.slug == "reactivate")
            await users.update_user(session, runtime, principal, uid, changes)
    except Conflict as exc:
        return redirect_with_flash(
            request, BASE_URL, f"{name} was not {action.done}: {exc.message}", "error"
        )
    if uid == principal.user_uid:
        # Their own account: the session has just stopped working.
        response = redirect_with_flash(
            request, "/login", f"{name} {action.done}: you are logged out."
        )
        clear_session_cookie(request, response)
        return response
    return redirect_with_flash(request, BASE_URL, f"{name} {action.done}.")


def _confirm_route(action: UserAction) -> Callable[..., Awaitable[Response]]:
    async def confirm(
        request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
    ) -> Response:
        return await _confirm(request, uid, principal, session, action)

    confirm.__name__ = f"confirm_{action.slug}_user"
    return confirm


def _apply_route(action: UserAction) -> Callable[..., Awaitable[Response]]:
    async def apply(
        request: Request,
        uid: str,
        principal: ConsolePrincipal,
        session: DbSession,
        runtime: RuntimeDep,
        csrf_token: CsrfToken = "",
    ) -> Response:
        return await _apply(request, uid, principal, session, runtime, csrf_token, action)

    apply.__name__ = f"{action.slug}_user"
    return apply


router.add_api_route(BASE_URL, list_users, methods=["GET"])
router.add_api_route(f"{BASE_URL}/new", new_user_form, methods=["GET"])
router.add_api_route(f"{BASE_URL}/new", create_user, methods=["POST"])
router.add_api_route(f"{BASE_URL}/{{uid}}/edit", edit_user_form, methods=["GET"])
router.add_api_route(f"{BASE_URL}/{{uid}}/edit", update_user, methods=["POST"])
for _action in ACTIONS.values():
    _path = f"{BASE_URL}/{{uid}}/{_action.slug}"
    router.add_api_route(_path, _confirm_route(_action), methods=["GET"])
    router.add_api_route(_path, _apply_route(_action), methods=["POST"])
