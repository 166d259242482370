"""A real SMTP server on loopback (aiosmtpd) that keeps what it received, and settings
that mail to it."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from keyplane.settings import Settings
from tests.conftest import make_settings
from tests.notifications.certificates import Certificates, make_certificates

SMTP_USER = "keyplane"
SMTP_PASSWORD = "smtp-password-never-logged"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def body_of(message: EmailMessage) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


@dataclass
class Mailbox:
    """What the SMTP server accepted, in order."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def texts(self) -> list[str]:
        """Each message whole: headers and body."""
        return [message.as_string() for message in self.messages]

    def bodies(self) -> list[str]:
        return [body_of(message) for message in self.messages]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A plain SMTP server (no TLS, no AUTH) on 127.0.0.1."""
    mailbox = Mailbox(port=free_port())
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "tls")


def _authenticate(
    _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    # handled=False: the server answers (235 or 535) itself.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_tls(certificates: Certificates) -> Iterator[Mailbox]:
    """An SMTP server that requires STARTTLS and then AUTH (a submission server)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    mailbox = Mailbox(port=free_port())
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=mailbox.port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticate,
    )
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: Mailbox) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        smtp_timeout_seconds=5,
        public_url="https://keyplane.example",
    )
