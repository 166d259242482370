"""Tenant scoping lives in one place per repository: the ``visible_*`` method that every
query starts from. No other code filters model rows on ``tenant_uid`` by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import keyplane

PACKAGE = Path(keyplane.__file__).parent
MODELS = {
    "ApiKey",
    "AuditEvent",
    "AuthSession",
    "Permission",
    "PermissionRole",
    "ResourceLimit",
    "Tenant",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
}
# Credential lookups run before any principal exists; they join on tenant, never filter.
EXEMPT = {"auth/repository.py"}
# The same, one function at a time: a key's role permissions, read while it authenticates,
# are those of the key's own tenant (given by the key row, not by a caller).
EXEMPT_FUNCTIONS = {("permissions/repository.py", "role_permissions")}


def _tenant_comparisons(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if (
                    isinstance(side, ast.Attribute)
                    and side.attr == "tenant_uid"
                    and isinstance(side.value, ast.Name)
                    and side.value.id in MODELS
                ):
                    found.append((node.lineno, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "")
    return found


def test_only_visible_methods_filter_on_tenant() -> None:
    offenders = []
    scoped_modules = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("models/", "migrations/")) or relative in EXEMPT:
            continue
        comparisons = _tenant_comparisons(ast.parse(path.read_text()))
        scoped_modules += bool(comparisons)
        offenders += [
            f"{relative}:{line} in {function or 'module'}"
            for line, function in comparisons
            if not function.startswith("visible_") and (relative, function) not in EXEMPT_FUNCTIONS
        ]
    assert offenders == []
    assert scoped_modules >= 4  # api_keys, users, audit, permissions
