"""The roles a user can have: the one list that the server, the console and the CLI use.

A module of its own, importing nothing, so that the ``keyplane`` command can list the roles
in its help without loading the ORM models (which would double its start-up time).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    TENANT_ADMIN = "tenant-admin"
    USER = "user"
    # A service account of a tenant's backend: a user that may also verify the tenant's keys.
    VERIFIER = "verifier"
