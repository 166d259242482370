"""``keyplane`` against a running server, through the SDK (``keyplane.client``): one module
per resource, gathered here for ``keyplane.cli.main``.

- ``account``: ``login``, ``logout``, ``whoami``
- ``keys``, ``users``, ``audit``, ``limits``, ``permissions`` (with ``permission-roles``)
- ``connection``: what they share (credentials, the server, options, exit codes)
"""

from __future__ import annotations

from keyplane.cli import account, audit, keys, limits, permissions, users
from keyplane.cli.connection import PANEL
from keyplane.cli.typer_help import KeyplaneTyper

__all__ = ["PANEL", "app", "audit_app", "keys_app", "limits_app", "users_app"]

# login, logout and whoami at the top level; and the groups keyplane.cli.main does not add
# itself.
app = KeyplaneTyper()
app.add_typer(account.app)
app.add_typer(permissions.app, name="permissions", rich_help_panel=PANEL)
app.add_typer(permissions.roles_app, name="permission-roles", rich_help_panel=PANEL)

keys_app = keys.app
users_app = users.app
audit_app = audit.app
limits_app = limits.app
