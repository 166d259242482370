"""keyplane: run the server and administer its database from the machine it runs on;
manage keys, users and limits of a running server over its API."""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from keyplane.cli import remote
from keyplane.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    # A traceback must never show local variables: they may hold keys or passwords.
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
# login, logout, whoami
app.add_typer(remote.app)
app.add_typer(remote.keys_app, name="keys", rich_help_panel=remote.PANEL)
app.add_typer(remote.users_app, name="users", rich_help_panel=remote.PANEL)
app.add_typer(remote.audit_app, name="audit", rich_help_panel=remote.PANEL)
app.add_typer(remote.limits_app, name="limits", rich_help_panel=remote.PANEL)


def _settings(database_url: str | None = None) -> Settings:
    if database_url:
        os.environ["KEYPLANE_DATABASE_URL"] = database_url
    try:
        return Settings()
    except ValidationError as exc:
        messages = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        typer.secho(f"Configuration error: {messages}", fg="red", err=True)
        raise typer.Exit(2) from exc


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path/file.db or postgresql://user@host/db (env KEYPLANE_DATABASE_URL).",
    ),
]


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrlOption = None) -> None:
    """Create or migrate the schema to the current version."""
    from keyplane.kit.migrations import upgrade_to_head

    settings = _settings(database_url)
    upgrade_to_head(settings.resolved_database_url)
    typer.echo("Database schema is up to date.")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (env KEYPLANE_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (env KEYPLANE_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing the port; each keeps its own key cache, kept in "
            "step with the others (env KEYPLANE_WORKERS).",
            envvar="KEYPLANE_WORKERS",
        ),
    ] = 1,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Serve the REST API and the console."""
    import uvicorn

    from keyplane.app import create_app
    from keyplane.kit.logging import log_config

    settings = _settings(database_url)
    # Once, before any worker starts, so that workers never race to create it.
    settings.load_secret_key()
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        # Keyplane writes its own access log, without query strings or session tokens.
        "access_log": False,
        # Client addresses come from KEYPLANE_TRUSTED_PROXIES only (keyplane.kit.client_address).
        "proxy_headers": False,
        "server_header": False,
        "log_config": log_config(),
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Workers are separate processes that build their app from the environment, which
    # _settings has already given the --database-url.
    uvicorn.run("keyplane.app:create_app_from_env", factory=True, workers=workers, **options)


@app.command()
def init(
    tenant: Annotated[str, typer.Option(help="Tenant (organization) name.")],
    admin_email: Annotated[str, typer.Option(help="Email of the first tenant admin.")],
    admin_password: Annotated[
        str | None,
        typer.Option(
            help="Password for the admin; generated and printed when omitted.",
            envvar="KEYPLANE_ADMIN_PASSWORD",
        ),
    ] = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when any tenant exists already.")
    ] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create the schema, a tenant and its first tenant admin."""
    from keyplane.kit.migrations import upgrade_to_head

    settings = _settings(database_url)
    upgrade_to_head(settings.resolved_database_url)
    password = admin_password or secrets.token_urlsafe(15)
    created = asyncio.run(_create_tenant(settings, tenant, admin_email, password, if_empty))
    if not created:
        typer.echo(
            "A tenant exists already; nothing was created. Log in with the password printed "
            "when it was created, or set a new one with `keyplane reset-password`."
        )
        return
    typer.echo(f"Created tenant {tenant!r} with tenant admin {admin_email}.")
    if admin_password is None:
        typer.echo(f"Generated password (shown once): {password}")


async def _create_tenant(
    settings: Settings, tenant_name: str, email: str, password: str, if_empty: bool
) -> bool:
    from keyplane.kit.db import create_engine, transaction
    from keyplane.kit.errors import KeyplaneError
    from keyplane.runtime import Runtime
    from keyplane.tenants import service as tenants
    from keyplane.users import service as users
    from keyplane.users.schemas import UserSpecEntity

    engine = create_engine(settings.resolved_database_url)
    try:
        runtime = Runtime.build(settings, engine)
        async with transaction(runtime.sessionmaker) as session:
            if if_empty and await tenants.any_tenant_exists(session):
                return False
            try:
                spec = UserSpecEntity.model_validate(
                    {"emailId": email, "roles": ["tenant-admin"], "password": password}
                )
                tenant = await tenants.create_tenant(session, tenant_name)
                await users.create_user(session, runtime, tenants.system_principal(tenant), spec)
            except (KeyplaneError, ValidationError) as exc:
                message = exc.message if isinstance(exc, KeyplaneError) else str(exc)
                typer.secho(f"Error: {message}", fg="red", err=True)
                raise typer.Exit(1) from exc
        return True
    finally:
        await engine.dispose()


@app.command("reset-password")
def reset_password(
    tenant: Annotated[str, typer.Option(help="Tenant (organization) name.")],
    email: Annotated[str, typer.Option(help="Email of the user.")],
    password: Annotated[
        str | None,
        typer.Option(
            help="The new password; generated and printed when omitted.",
            envvar="KEYPLANE_NEW_PASSWORD",
        ),
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Set a user's password from the server itself (for a lost tenant admin password)."""
    settings = _settings(database_url)
    new_password = password or secrets.token_urlsafe(15)
    asyncio.run(_reset_password(settings, tenant, email, new_password))
    typer.echo(f"Password changed for {email} in tenant {tenant!r}.")
    if password is None:
        typer.echo(f"Generated password (shown once): {new_password}")


async def _reset_password(settings: Settings, tenant_name: str, email: str, password: str) -> None:
    from pydantic import SecretStr

    from keyplane.kit.db import create_engine, transaction
    from keyplane.kit.errors import KeyplaneError
    from keyplane.runtime import Runtime
    from keyplane.tenants import repository as tenant_repository
    from keyplane.tenants.service import system_principal
    from keyplane.users import repository as user_repository
    from keyplane.users import service as users
    from keyplane.users.schemas import UserChanges

    engine = create_engine(settings.resolved_database_url)
    try:
        runtime = Runtime.build(settings, engine)
        async with transaction(runtime.sessionmaker) as session:
            tenant = await tenant_repository.find_by_name(session, tenant_name)
            if tenant is None:
                typer.secho(f"Error: no tenant named {tenant_name!r}.", fg="red", err=True)
                raise typer.Exit(1)
            principal = system_principal(tenant)
            user = await user_repository.find_by_email(session, principal, email.strip().lower())
            if user is None:
                typer.secho(f"Error: no user {email} in {tenant_name!r}.", fg="red", err=True)
                raise typer.Exit(1)
            try:
                await users.update_user(
                    session,
                    runtime,
                    principal,
                    user.uid,
                    UserChanges(password=SecretStr(password)),
                )
            except KeyplaneError as exc:
                typer.secho(f"Error: {exc.message}", fg="red", err=True)
                raise typer.Exit(1) from exc
    finally:
        await engine.dispose()


def main() -> None:
    app()
