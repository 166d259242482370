"""keyplane.kit.mail against real SMTP servers on loopback: STARTTLS with AUTH, verified
certificates, and errors that never carry the password."""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage

import httpx
import pytest
from pydantic import SecretStr

from keyplane.kit import mail
from keyplane.notifications import worker
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.notifications.certificates import Certificates
from tests.notifications.conftest import SMTP_PASSWORD, SMTP_USER, Mailbox, body_of
from tests.notifications.helpers import notifications_of


def _message(uid: str = "n1") -> EmailMessage:
    return mail.build_message(
        sender="Keyplane <keyplane@keyplane.example>",
        recipient="alice@acme.example",
        subject="Hello",
        body="Plain text.",
        notification_uid=uid,
    )


def test_the_url_says_how_to_connect() -> None:
    server = mail.parse_smtp_url("smtp+starttls://me%40x:p%3Ass@mail.example:2525?ca_file=/ca.pem")
    assert (server.hostname, server.port, server.use_tls, server.start_tls) == (
        "mail.example",
        2525,
        False,
        True,
    )
    assert (server.username, server.password, server.ca_file) == ("me@x", "p:ss", "/ca.pem")
    assert "p:ss" not in repr(server)
    assert mail.parse_smtp_url("smtps://mail.example").port == 465
    assert mail.parse_smtp_url("smtps://mail.example").use_tls
    plain = mail.parse_smtp_url("smtp://mail.example")
    assert (plain.port, plain.start_tls, plain.username) == (25, None, None)
    with pytest.raises(ValueError, match="smtp://"):
        mail.parse_smtp_url("http://mail.example")


async def test_starttls_and_auth_with_a_trusted_ca(
    smtp_tls: Mailbox, certificates: Certificates
) -> None:
    url = (
        f"smtp+starttls://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp_tls.port}"
        f"?ca_file={certificates.ca_file}"
    )
    await mail.send(mail.parse_smtp_url(url), _message("n-tls"), timeout_seconds=5)
    [message] = smtp_tls.messages
    assert message["X-Keyplane-Notification"] == "n-tls"
    assert message["Subject"] == "Hello"
    assert body_of(message).strip() == "Plain text."


async def test_certificates_are_verified_by_default(smtp_tls: Mailbox) -> None:
    # The test CA is not in the system's trust store: refused, the password never sent.
    url = f"smtp+starttls://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp_tls.port}"
    with pytest.raises(mail.MailError) as refused:
        await mail.send(mail.parse_smtp_url(url), _message(), timeout_seconds=5)
    assert SMTP_PASSWORD not in str(refused.value)
    assert smtp_tls.messages == []


async def test_a_wrong_password_is_an_error_without_the_password(
    smtp_tls: Mailbox, certificates: Certificates
) -> None:
    url = (
        f"smtp+starttls://{SMTP_USER}:wrong-secret@127.0.0.1:{smtp_tls.port}"
        f"?ca_file={certificates.ca_file}"
    )
    with pytest.raises(mail.MailError) as refused:
        await mail.send(mail.parse_smtp_url(url), _message(), timeout_seconds=5)
    assert "wrong-secret" not in str(refused.value)
    assert "535" in str(refused.value)
    assert smtp_tls.messages == []


async def test_starttls_required_is_not_skipped_on_a_server_without_it(smtp: Mailbox) -> None:
    url = f"smtp+starttls://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
    with pytest.raises(mail.MailError):
        await mail.send(mail.parse_smtp_url(url), _message(), timeout_seconds=5)
    assert smtp.messages == []


async def test_notifications_go_out_over_starttls_with_auth(
    client: httpx.AsyncClient,
    runtime: Runtime,
    world: World,
    smtp_tls: Mailbox,
    certificates: Certificates,
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    url = (
        f"smtp+starttls://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp_tls.port}"
        f"?ca_file={certificates.ca_file}"
    )
    secure = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"smtp_url": SecretStr(url)})
    )
    await worker.send_due(secure)
    [message] = smtp_tls.messages
    assert message["Subject"] == "Your API key “deploy” was deleted"
    assert key.value not in message.as_string()
    [row] = await notifications_of(runtime)
    assert row.status == "sent"
