"""keyplane: run the server and administer its database from the machine it runs on;
manage keys, users and limits of a running server over its API."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from keyplane import __version__
from keyplane.cli import policy, remote, scan, webhooks
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.kit.problems import describe_problem, sentence, split_location
from keyplane.settings import Settings

app = KeyplaneTyper(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    # A traceback must never show local variables: they may hold keys or passwords.
    pretty_exceptions_show_locals=False,
)
db_app = KeyplaneTyper(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
# login, logout, whoami
app.add_typer(remote.app)
app.add_typer(remote.keys_app, name="keys", rich_help_panel=remote.PANEL)
app.add_typer(remote.users_app, name="users", rich_help_panel=remote.PANEL)
app.add_typer(remote.audit_app, name="audit", rich_help_panel=remote.PANEL)
app.add_typer(remote.limits_app, name="limits", rich_help_panel=remote.PANEL)
app.add_typer(policy.app, name="policy", rich_help_panel=remote.PANEL)
app.add_typer(webhooks.app, name="webhooks", rich_help_panel=remote.PANEL)
# Local: finds keys in files; reports them to a server only when asked (--report).
app.command("scan")(scan.scan)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"keyplane {__version__}")
        raise typer.Exit()


@app.callback()
def _keyplane(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    pass


def _settings(database_url: str | None = None) -> Settings:
    if database_url:
        os.environ["KEYPLANE_DATABASE_URL"] = database_url
    try:
        return Settings()
    except ValidationError as exc:
        messages = "; ".join(
            sentence(f"KEYPLANE_{split_location(error['loc'])[1].upper()}", describe_problem(error))
            for error in exc.errors()
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
    """Serve the REST API and the console.

    Listens on --host and --port, else KEYPLANE_HOST and KEYPLANE_PORT (127.0.0.1:8000).

    Prints the addresses of the console and the API first.
    """
    import uvicorn

    from keyplane.app import create_app
    from keyplane.kit.logging import log_config, quicken_logging

    settings = _settings(database_url)
    quicken_logging()
    # Once, before any worker starts, so that workers never race to create it.
    settings.load_secret_key()
    listen_host = host or settings.host
    listen_port = port or settings.port
    # Printed here, from what the server is given, so that no other place (the Makefile)
    # has to guess the address.
    base = f"http://{_url_host(listen_host)}:{listen_port}"
    typer.echo(f"Console:       {base}/")
    typer.echo(f"Keyplane API:  {base}/v1   (interactive docs: {base}/docs)")
    options: dict[str, Any] = {
        "host": listen_host,
        "port": listen_port,
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
    # _settings has already given the --database-url; and, so that one scrape of /metrics
    # sums them all, a directory of this run's own for their metrics.
    from keyplane.kit.metrics import multiprocess_directory

    with multiprocess_directory():
        uvicorn.run("keyplane.app:create_app_from_env", factory=True, workers=workers, **options)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@app.command()
def init(
    tenant: Annotated[str, typer.Option(help="Tenant (organization) name.")],
    admin_email: Annotated[str, typer.Option(help="Email of the first tenant admin.")],
    admin_first_name: Annotated[
        str, typer.Option(help="First name of the first tenant admin.")
    ] = "Tenant",
    admin_last_name: Annotated[
        str, typer.Option(help="Last name of the first tenant admin.")
    ] = "Admin",
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
    admin = _Admin(admin_email, admin_first_name, admin_last_name, password)
    created = asyncio.run(_create_tenant(settings, tenant, admin, if_empty))
    if not created:
        typer.echo(
            "A tenant exists already; nothing was created. Log in with the password printed "
            "when it was created, or set a new one with `keyplane reset-password`."
        )
        return
    typer.echo(f"Created tenant {tenant!r} with tenant admin {admin_email}.")
    if admin_password is None:
        typer.echo(f"Generated password (shown once): {password}")


@dataclass(frozen=True)
class _Admin:
    email: str
    first_name: str
    last_name: str
    password: str


async def _create_tenant(
    settings: Settings, tenant_name: str, admin: _Admin, if_empty: bool
) -> bool:
    from keyplane.kit.db import create_engine, transaction
    from keyplane.kit.errors import KeyplaneError
    from keyplane.roles import Role
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
                    {
                        "emailId": admin.email,
                        "firstName": admin.first_name,
                        "lastName": admin.last_name,
                        "roles": [Role.TENANT_ADMIN.value],
                        "password": admin.password,
                    }
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
