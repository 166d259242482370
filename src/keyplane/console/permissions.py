"""Tenant Settings > Permissions: the tenant's own permission names and the roles that
bundle them; adding and deleting a permission, adding, editing and deleting a role.

Every rule is the permissions service's: this module only turns forms into its calls and
its refusals into messages next to the fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import ValidationError

from keyplane.auth.principal import Principal
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf, require_tenant_admin
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, KeyplaneError, ValidationFailed
from keyplane.kit.problems import describe_problem
from keyplane.models import PermissionRole
from keyplane.permissions import service as permissions
from keyplane.permissions.schemas import PermissionCreate, PermissionRoleCreate
from keyplane.runtime import RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/tenant/settings/permissions"
ROLES_URL = f"{BASE_URL}/roles"
CsrfToken = Annotated[str, Form()]
Checked = Annotated[list[str] | None, Form()]

_LABELS = {"name": "Name", "description": "Description", "permissions": "Permissions"}
_SERVICE_FIELDS = {"metadata.name": "name", "spec.permissions": "permissions"}


def _context(**values: Any) -> dict[str, Any]:
    return {
        "scope": "tenant",
        "section": "permissions",
        "base_url": BASE_URL,
        "roles_url": ROLES_URL,
        **values,
    }


def _schema_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        field = next((name for name in ("description", "permissions") if name in location), "name")
        errors.setdefault(field, f"{_LABELS[field]} {describe_problem(error)}.")
    return errors


def _service_errors(exc: KeyplaneError) -> dict[str, str]:
    field = str((exc.details or {}).get("field", ""))
    return {_SERVICE_FIELDS.get(field, "form"): exc.message}


def _status(exc: Exception) -> int:
    return 409 if isinstance(exc, Conflict) else 400


# --- the list -------------------------------------------------------------------------


async def list_permissions(
    request: Request, principal: ConsolePrincipal, session: DbSession
) -> Response:
    require_tenant_admin(principal)
    defined, _count = await permissions.list_permissions(session, principal)
    roles, _count = await permissions.list_roles(session, principal)
    return render(
        request,
        "permissions/list.html",
        _context(
            permissions=defined,
            roles=roles,
            max_permissions=permissions.MAX_PERMISSIONS,
            max_roles=permissions.MAX_ROLES,
        ),
        principal=principal,
    )


# --- permissions ----------------------------------------------------------------------


def _permission_form(
    request: Request,
    principal: Principal,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "permissions/permission_form.html",
        _context(
            values=values,
            errors=errors,
            action=f"{BASE_URL}/new",
            cancel_url=BASE_URL,
            name_rule=permissions.NAME_RULE,
        ),
        principal=principal,
        status_code=status_code,
    )


async def new_permission_form(
    request: Request,
    principal: ConsolePrincipal,
    name: Annotated[str, Query(max_length=200)] = "",
    description: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """The form, optionally filled in (after a new login interrupted a submission)."""
    require_tenant_admin(principal)
    return _permission_form(request, principal, {"name": name, "description": description}, {})


async def create_permission(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    values = {"name": name, "description": description}
    try:
        body = PermissionCreate.model_validate(
            {"metadata": {"name": name, "annotations": {"description": description}}}
        )
        permission = await permissions.create_permission(
            session,
            principal,
            name=body.metadata.name,
            description=body.metadata.annotations.description,
        )
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = _schema_errors(exc) if isinstance(exc, ValidationError) else _service_errors(exc)
        return _permission_form(request, principal, values, errors, _status(exc))
    return redirect_with_flash(request, BASE_URL, f"Permission {permission.name} added.")


def _holding(roles: list[PermissionRole], name: str) -> list[str]:
    return [role.name for role in roles if name in role.permissions]


async def confirm_delete_permission(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    require_tenant_admin(principal)
    permission = await permissions.get_permission(session, principal, uid)
    roles, _count = await permissions.list_roles(session, principal)
    return render(
        request,
        "permissions/confirm_delete.html",
        _context(
            kind="permission",
            name=permission.name,
            action=f"{BASE_URL}/{permission.uid}/delete",
            roles=_holding(roles, permission.name),
        ),
        principal=principal,
    )


async def delete_permission(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    permission = await permissions.get_permission(session, principal, uid)
    name = permission.name
    await permissions.delete_permission(session, principal, uid)
    return redirect_with_flash(request, BASE_URL, f"Permission {name} deleted.")


# --- roles ----------------------------------------------------------------------------


async def _role_form(
    request: Request,
    principal: Principal,
    session: DbSession,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    role: PermissionRole | None = None,
    status_code: int = 200,
) -> Response:
    defined, _count = await permissions.list_permissions(session, principal)
    available = [permission.name for permission in defined]
    # A name checked but no longer defined (deleted meanwhile) stays visible, to be
    # unchecked: the service names it in its refusal.
    available += sorted(set(values["permissions"]) - set(available))
    return render(
        request,
        "permissions/role_form.html",
        _context(
            heading=f"Edit role {role.name}" if role else "Add role",
            submit_label="Save" if role else "Add role",
            values=values,
            errors=errors,
            available=available,
            descriptions={permission.name: permission.description for permission in defined},
            action=f"{ROLES_URL}/{role.uid}/edit" if role else f"{ROLES_URL}/new",
            cancel_url=BASE_URL,
            name_rule=permissions.NAME_RULE,
            max_role_permissions=permissions.MAX_ROLE_PERMISSIONS,
        ),
        principal=principal,
        status_code=status_code,
    )


def _role_values(name: str, description: str, checked: list[str] | None) -> dict[str, Any]:
    return {"name": name, "description": description, "permissions": list(checked or [])}


def _role_body(values: dict[str, Any]) -> PermissionRoleCreate:
    return PermissionRoleCreate.model_validate(
        {
            "metadata": {
                "name": values["name"],
                "annotations": {"description": values["description"]},
            },
            "spec": {"permissions": values["permissions"]},
        }
    )


async def new_role_form(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    name: Annotated[str, Query(max_length=200)] = "",
    description: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """The form, optionally filled in (after a new login interrupted a submission)."""
    require_tenant_admin(principal)
    return await _role_form(request, principal, session, _role_values(name, description, []), {})


async def create_role(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    permission: Checked = None,
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    values = _role_values(name, description, permission)
    try:
        body = _role_body(values)
        role = await permissions.create_role(
            session,
            principal,
            name=body.metadata.name,
            description=body.metadata.annotations.description,
            permissions=body.spec.permissions,
        )
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = _schema_errors(exc) if isinstance(exc, ValidationError) else _service_errors(exc)
        return await _role_form(
            request, principal, session, values, errors, status_code=_status(exc)
        )
    return redirect_with_flash(request, BASE_URL, f"Role {role.name} added.")


async def edit_role_form(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    name: Annotated[str | None, Query(max_length=200)] = None,
    description: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    require_tenant_admin(principal)
    role = await permissions.get_role(session, principal, uid)
    values = _role_values(
        role.name if name is None else name,
        role.description if description is None else description,
        list(role.permissions),
    )
    return await _role_form(request, principal, session, values, {}, role=role)


async def update_role(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    permission: Checked = None,
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    role = await permissions.get_role(session, principal, uid)
    values = _role_values(name, description, permission)
    try:
        body = _role_body(values)
        role = await permissions.update_role(
            session,
            principal,
            uid,
            name=body.metadata.name,
            description=body.metadata.annotations.description,
            permissions=body.spec.permissions,
        )
    except (ValidationError, ValidationFailed, Conflict) as exc:
        errors = _schema_errors(exc) if isinstance(exc, ValidationError) else _service_errors(exc)
        return await _role_form(
            request, principal, session, values, errors, role=role, status_code=_status(exc)
        )
    return redirect_with_flash(request, BASE_URL, f"Role {role.name} saved.")


async def confirm_delete_role(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    require_tenant_admin(principal)
    role = await permissions.get_role(session, principal, uid)
    return render(
        request,
        "permissions/confirm_delete.html",
        _context(
            kind="role",
            name=role.name,
            action=f"{ROLES_URL}/{role.uid}/delete",
            roles=[],
        ),
        principal=principal,
    )


async def delete_role(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    role = await permissions.get_role(session, principal, uid)
    name = role.name
    await permissions.delete_role(session, principal, uid)
    return redirect_with_flash(request, BASE_URL, f"Role {name} deleted.")


router.add_api_route(BASE_URL, list_permissions, methods=["GET"])
router.add_api_route(f"{BASE_URL}/new", new_permission_form, methods=["GET"])
router.add_api_route(f"{BASE_URL}/new", create_permission, methods=["POST"])
router.add_api_route(f"{ROLES_URL}/new", new_role_form, methods=["GET"])
router.add_api_route(f"{ROLES_URL}/new", create_role, methods=["POST"])
router.add_api_route(f"{ROLES_URL}/{{uid}}/edit", edit_role_form, methods=["GET"])
router.add_api_route(f"{ROLES_URL}/{{uid}}/edit", update_role, methods=["POST"])
router.add_api_route(f"{ROLES_URL}/{{uid}}/delete", confirm_delete_role, methods=["GET"])
router.add_api_route(f"{ROLES_URL}/{{uid}}/delete", delete_role, methods=["POST"])
router.add_api_route(f"{BASE_URL}/{{uid}}/delete", confirm_delete_permission, methods=["GET"])
router.add_api_route(f"{BASE_URL}/{{uid}}/delete", delete_permission, methods=["POST"])
