"""Palette-shaped permission and permission role bodies.

A permission is ``{"metadata": {"name", "annotations": {"description"}}}``; a role adds
``{"spec": {"permissions": [names]}}``. Names are checked by the service (one rule for the
REST API and the console), so the bodies only bound their size here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from keyplane.kit.pagination import ListResponse
from keyplane.kit.schemas import ObjectMeta, PaletteModel
from keyplane.kit.validation import Description
from keyplane.models import Permission, PermissionRole

NAME_DESCRIPTION = (
    "1 to 64 characters: letters, digits and _ . : - , starting with a letter or digit; "
    "not 'and', 'or' or 'not'. Case-sensitive."
)
# Far above any role the service accepts (MAX_ROLE_PERMISSIONS): only a bound on the body.
_MAX_LISTED = 1_000


class PermissionAnnotations(PaletteModel):
    description: Description | None = None


class PermissionMetadataEntity(PaletteModel):
    # Checked by the service; the bound keeps a huge value out of its messages.
    name: str = Field(max_length=256, description=NAME_DESCRIPTION)
    annotations: PermissionAnnotations = Field(default_factory=PermissionAnnotations)


class PermissionCreate(PaletteModel):
    metadata: PermissionMetadataEntity


class PermissionRead(PaletteModel):
    metadata: ObjectMeta


class PermissionList(ListResponse):
    items: list[PermissionRead]


class PermissionRoleSpecEntity(PaletteModel):
    permissions: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        max_length=_MAX_LISTED,
        description="Names of permissions of the tenant (at most 100, repeats ignored).",
    )


class PermissionRoleCreate(PaletteModel):
    metadata: PermissionMetadataEntity
    spec: PermissionRoleSpecEntity = Field(
        default_factory=lambda: PermissionRoleSpecEntity(permissions=[])
    )


class PermissionRoleUpdate(PaletteModel):
    """Replaces the role: its name, its description (omitted: none) and its permissions."""

    metadata: PermissionMetadataEntity
    spec: PermissionRoleSpecEntity


class PermissionRoleSpec(PaletteModel):
    permissions: list[str]


class PermissionRoleRead(PaletteModel):
    metadata: ObjectMeta
    spec: PermissionRoleSpec


class PermissionRoleList(ListResponse):
    items: list[PermissionRoleRead]


def permission_read(permission: Permission) -> PermissionRead:
    return PermissionRead(
        metadata=ObjectMeta(
            uid=permission.uid,
            name=permission.name,
            annotations={"description": permission.description},
            creation_timestamp=permission.created_at,
            # A permission is never changed, only created and deleted.
            last_modified_timestamp=permission.created_at,
        )
    )


def permission_role_read(role: PermissionRole) -> PermissionRoleRead:
    return PermissionRoleRead(
        metadata=ObjectMeta(
            uid=role.uid,
            name=role.name,
            annotations={"description": role.description},
            creation_timestamp=role.created_at,
            last_modified_timestamp=role.modified_at,
        ),
        spec=PermissionRoleSpec(permissions=list(role.permissions)),
    )
