"""Sending one plain-text mail over SMTP (aiosmtplib), configured by one URL.

``KEYPLANE_SMTP_URL``:

- ``smtp://[user:password@]host[:port]``: port 25 by default; STARTTLS when the server
  offers it (opportunistic), plain otherwise;
- ``smtp+starttls://...``: port 587 by default; STARTTLS required (the mail is not sent
  over a server that does not offer it);
- ``smtps://...``: port 465 by default; TLS from the first byte.

Certificates are always verified, against the system's trust store, or against the CA
file named by the ``ca_file`` query parameter (``smtps://mail.internal?ca_file=/etc/ssl/
corp-ca.pem``) for a server with a private CA. There is no way to turn verification off:
a relay that cannot be verified would learn the AUTH password.

Every wait is bounded: each SMTP step by ``timeout_seconds``, and the whole exchange by
``SEND_TIMEOUT_FACTOR`` times that, so that a caller can size a lease around one send.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

# Header with the notification's uid: a receiver that saw it already may drop the copy
# (a mail is sent again only when an instance died between the SMTP server's 250 and
# marking the notification sent).
NOTIFICATION_HEADER = "X-Keyplane-Notification"
SEND_TIMEOUT_FACTOR = 3

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class MailError(Exception):
    """A mail was not sent. ``str()`` is safe to store and show: it never contains the
    SMTP password. ``permanent``: the server refused it for good (5xx for the recipient)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SmtpServer:
    hostname: str
    port: int
    use_tls: bool
    # None: STARTTLS when offered; True: required; False is never used.
    start_tls: bool | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    def tls_context(self) -> ssl.SSLContext:
        # Verification on, hostname checked: create_default_context's defaults.
        return ssl.create_default_context(cafile=self.ca_file)


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("The SMTP URL must start with smtp://, smtp+starttls:// or smtps://")
    if not parts.hostname:
        raise ValueError("The SMTP URL names no host.")
    query = parse_qs(parts.query)
    ca_files = query.get("ca_file") or []
    return SmtpServer(
        hostname=parts.hostname,
        port=parts.port or _DEFAULT_PORTS[scheme],
        use_tls=scheme == "smtps",
        start_tls=True if scheme == "smtp+starttls" else None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ca_file=ca_files[0] if ca_files else None,
    )


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    notification_uid: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "keyplane.invalid"
    message["Message-ID"] = make_msgid(idstring=notification_uid, domain=domain)
    message[NOTIFICATION_HEADER] = notification_uid
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def _describe(exc: BaseException, server: SmtpServer) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{type(exc).__name__}: {exc.code} {exc.message}"
    elif isinstance(exc, TimeoutError):
        text = f"timed out talking to {server.hostname}:{server.port}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if server.password:
        text = text.replace(server.password, "***")
    return text[:500]


async def send(
    server: SmtpServer,
    message: EmailMessage,
    *,
    timeout_seconds: float,
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """Sends ``message``; raises ``MailError`` when it was not accepted."""
    try:
        async with asyncio.timeout(timeout_seconds * SEND_TIMEOUT_FACTOR):
            await aiosmtplib.send(
                message,
                hostname=server.hostname,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.use_tls,
                start_tls=server.start_tls,
                validate_certs=True,
                tls_context=tls_context or server.tls_context(),
                timeout=timeout_seconds,
            )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        permanent = all(500 <= refusal.code < 600 for refusal in exc.recipients)
        raise MailError(_describe(exc, server), permanent=permanent) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
        # ``from None``: the chained exception could carry the AUTH exchange.
        raise MailError(_describe(exc, server)) from None
