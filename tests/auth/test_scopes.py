"""The scope catalogue and the check of a key's scopes."""

from __future__ import annotations

import pytest

from keyplane.auth.scopes import (
    OPERATION_SCOPES,
    ROLE_SCOPES,
    SCOPES,
    UnknownScope,
    missing_scope,
    normalised_scopes,
)
from keyplane.roles import Role


def test_every_role_holds_only_catalogued_scopes_and_admins_hold_all() -> None:
    assert ROLE_SCOPES[Role.TENANT_ADMIN] == frozenset(SCOPES)
    for held in ROLE_SCOPES.values():
        assert held <= frozenset(SCOPES)
    assert set(OPERATION_SCOPES.values()) - {None} <= set(SCOPES)


def test_scopes_are_normalised_and_unknown_ones_named() -> None:
    assert normalised_scopes(["verify", "apiKeys:read", "verify"]) == ["apiKeys:read", "verify"]
    with pytest.raises(UnknownScope, match="apiKeys:admin"):
        normalised_scopes(["apiKeys:read", "apiKeys:admin"])


def test_a_key_s_scopes_decide_each_operation() -> None:
    assert missing_scope("v1ApiKeysList", None) is None
    assert missing_scope("v1ApiKeysList", frozenset({"apiKeys:read"})) is None
    assert missing_scope("v1ApiKeysCreate", frozenset({"apiKeys:read"})) == "apiKeys:write"
    assert missing_scope("v1UsersInfoGet", frozenset()) is None
    # Not an operation a key is meant for: only unrestricted keys go on.
    assert missing_scope("somethingNew", frozenset(SCOPES)) == "*"
    assert missing_scope(None, frozenset(SCOPES)) == "*"
    assert missing_scope(None, None) is None
