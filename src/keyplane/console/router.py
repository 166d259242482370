"""Everything the console serves, for ``create_app`` to include."""

from __future__ import annotations

from fastapi import APIRouter

from keyplane.console import (
    api_key_actions,
    api_key_list,
    api_key_policy,
    api_key_rotation,
    api_keys,
    audit,
    auth,
    notifications,
    permissions,
    resource_limits,
    users,
    webhooks,
)

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
router.include_router(api_key_list.router)
router.include_router(api_keys.router)
router.include_router(api_key_actions.router)
router.include_router(api_key_rotation.router)
router.include_router(api_key_policy.router)
router.include_router(users.router)
router.include_router(resource_limits.router)
router.include_router(permissions.router)
router.include_router(audit.router)
router.include_router(notifications.router)
router.include_router(webhooks.router)
