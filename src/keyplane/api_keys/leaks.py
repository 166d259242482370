"""Leaked keys: reports that a key's value was seen where it should not be, and what they
do to the key.

Reports come through two doors, both without a Keyplane credential: ``POST
/v1/apiKeys/leaks`` (anyone, e.g. ``keyplane scan --report``) and GitHub's secret scanning
partner programme (``POST /v1/apiKeys/leaks/github``, signed by GitHub: ``api_keys.github``).
Both end here, in ``report_leaks``:

- Every value is looked up by its keyed hash, as authentication does; one query for the
  whole report. Values that are no key are ignored, and the answer (the endpoints') is the
  same whatever was found. The one thing that differs is the time a real key's writes
  take; that tells nothing to someone who could not simply try the value against the API
  (which is the better oracle, and rate limited), and a report of a real key revokes it
  under the default policy.
- Each sighting of a real key is a ``KeyLeak`` row (reporter, URL, source, the reporting
  address), never the value. At most ``MAX_SIGHTINGS_PER_KEY`` per key, and an identical
  sighting (same reporter, URL and source) is not recorded twice: the first sightings are
  the ones kept, so a flood of invented URLs for a key cannot push out the real ones.
- The first report (``leaked_at`` NULL) sets ``leaked_at`` and acts by the tenant's
  policy (``leakAction``): ``revoke`` (the default) revokes the key at once through the
  same rule as a person's revoke (``api_keys.service.set_api_key_active``, reason
  ``leaked``: every instance refuses the key before the report is answered), ``flag``
  only marks it. It is announced once: ``apiKey.leaked`` for webhooks, and a mail to the
  owner and to every active tenant admin of the key's tenant (the key's name and hint,
  where it was seen, a link to its console page; never its value).
- Every recorded sighting is audited (``apiKey.leakReported``) with its URL and source,
  by the tenant's system actor. Later reports of a key already reported add sightings
  (within the bound) and audit records, and nothing else: no second mail, no event.
- A tenant admin's confirmed re-activation clears ``leaked_at`` (the sightings stay): a
  report after that acts again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.api_keys import repository
from keyplane.api_keys import service as api_keys
from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import repository as auth_repository
from keyplane.auth.principal import Principal
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.keys import hint_display
from keyplane.kit.time import as_utc, rfc3339, utcnow
from keyplane.models import ApiKey, KeyLeak, LeakAction, LeakReporter, Tenant, User
from keyplane.notifications import service as notifications
from keyplane.policies import service as key_policy
from keyplane.runtime import Runtime
from keyplane.tenants.service import system_principal
from keyplane.users import repository as users

LEAKED = "leaked"
MAX_SIGHTINGS_PER_KEY = 100
# The sightings an API read or the console shows (the newest).
SHOWN_SIGHTINGS = 20
# Longer than any key: such a value is not looked up (and not hashed) at all.
MAX_VALUE_LENGTH = 256


@dataclass(frozen=True, slots=True)
class LeakReport:
    """One value reported, and where it was seen (as the reporter says)."""

    value: str
    url: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Sighting:
    reporter: str
    url: str
    source: str
    reported_at: datetime


def _principal(tenant: Tenant, reporter: str, client_address: str) -> Principal:
    """The actor of a report's changes: Keyplane itself, acting for the reporter."""
    name = "GitHub secret scanning" if reporter == LeakReporter.GITHUB else "leak report"
    return dataclasses.replace(
        system_principal(tenant, client_address), first_name="keyplane", last_name=name
    )


def _where(url: str, source: str) -> str:
    if url and source:
        return f"{url} ({source})"
    return url or source or "(the reporter did not say where)"


def _reported_by(reporter: str, client_address: str) -> str:
    if reporter == LeakReporter.GITHUB:
        return "GitHub secret scanning"
    return f"a leak report from {client_address or 'an unknown address'}"


async def report_leaks(
    session: AsyncSession,
    runtime: Runtime,
    reports: Sequence[LeakReport],
    *,
    reporter: str,
    client_address: str,
) -> frozenset[str]:
    """Acts on every reported value that is a key (see the module's docstring). Returns
    the values that are keys, for GitHub's labels; the open endpoint must not tell."""
    by_hash: dict[str, LeakReport] = {}
    for report in reports:
        value = report.value.strip()
        if not value or len(value) > MAX_VALUE_LENGTH or not value.isascii():
            continue
        # The first place a value was reported in this request is the one recorded.
        by_hash.setdefault(runtime.secret_hasher.hash(value), dataclasses.replace(report))
    found = await auth_repository.find_reported_keys(session, sorted(by_hash))
    real: set[str] = set()
    policies: dict[str, str] = {}
    for key, owner, tenant in found:
        report = by_hash[key.key_hash]
        real.add(report.value.strip())
        principal = _principal(tenant, reporter, client_address)
        if tenant.uid not in policies:
            rules = await key_policy.key_policy(session, runtime.settings, tenant.uid)
            policies[tenant.uid] = rules.leak_action
        await _act(
            session, principal, key, owner, report, reporter, client_address, policies[tenant.uid]
        )
    return frozenset(real)


async def _record_sighting(
    session: AsyncSession,
    principal: Principal,
    key: ApiKey,
    report: LeakReport,
    reporter: str,
    client_address: str,
    now: datetime,
) -> bool:
    if await repository.leak_seen(session, principal, key.uid, reporter, report.url, report.source):
        return False
    if await repository.count_leaks(session, principal, key.uid) >= MAX_SIGHTINGS_PER_KEY:
        return False
    session.add(
        KeyLeak(
            tenant_uid=key.tenant_uid,
            key_uid=key.uid,
            reporter=reporter,
            url=report.url,
            source=report.source,
            client_address=client_address[:64],
            reported_at=now,
        )
    )
    return True


async def _act(
    session: AsyncSession,
    principal: Principal,
    key: ApiKey,
    owner: User,
    report: LeakReport,
    reporter: str,
    client_address: str,
    leak_action: str,
) -> None:
    now = utcnow()
    first = key.leaked_at is None
    recorded = await _record_sighting(
        session, principal, key, report, reporter, client_address, now
    )
    action = ""
    if first:
        key.leaked_at = now
        key.modified_at = now
        revoke = leak_action == LeakAction.REVOKE and key.is_active
        if revoke:
            await api_keys.set_api_key_active(session, principal, key.uid, False, reason=LEAKED)
        action = "revoked" if revoke else "flagged"
    if not (first or recorded):
        return
    where = _where(report.url, report.source)
    if first:
        outcome = (
            "revoked by the tenant's policy"
            if action == "revoked"
            else ("flagged (the tenant's policy only flags leaked keys)" if key.is_active else "")
        )
        message = f"first report, by {_reported_by(reporter, client_address)}: seen at {where}"
        message += f"; {outcome}" if outcome else "; it was revoked already"
    else:
        message = (
            f"reported again, by {_reported_by(reporter, client_address)}: seen at {where} "
            f"(first reported {rfc3339(key.leaked_at or now)})"
        )
    audit.record(
        session,
        principal,
        Action.API_KEY_LEAK_REPORTED,
        ResourceKind.API_KEY,
        key.uid,
        key.name,
        message=message,
        # The message may be cut to fit; the sighting is here whole.
        changes={
            **({"leakedAt": {"old": None, "new": rfc3339(now)}} if first else {}),
            "sighting": {
                "old": None,
                "new": {"reporter": reporter, "url": report.url, "source": report.source},
            },
        },
    )
    if not first:
        return
    leak = {
        "reporter": reporter,
        "url": report.url,
        "source": report.source,
        "reportedAt": rfc3339(now),
    }
    await emit(
        session,
        principal,
        EventType.API_KEY_LEAKED,
        api_key=key,
        user=owner,
        extra={"leak": leak, "action": action},
        occurred_at=now,
    )
    await _tell(session, principal, key, owner, report, reporter, client_address, action, now)


async def _tell(
    session: AsyncSession,
    principal: Principal,
    key: ApiKey,
    owner: User,
    report: LeakReport,
    reporter: str,
    client_address: str,
    action: str,
    now: datetime,
) -> None:
    """One mail to the owner and one to each active tenant admin, once per first report
    (the dedupe key names the report's moment)."""
    recipients = {owner.uid: owner} if owner.is_active else {}
    for admin in await users.active_admins(session, principal):
        recipients.setdefault(admin.uid, admin)
    label = f"“{key.name}” ({hint_display(key.key_hint)})"
    when = as_utc(now).strftime("%Y-%m-%d %H:%M UTC")
    if action == "revoked":
        done = "Keyplane revoked it at once: requests with it are refused from now on."
    elif key.is_active:
        done = (
            "It still works: this tenant's policy only flags leaked keys. Whoever saw it can "
            "use it until it is rotated or revoked."
        )
    else:
        done = "It was revoked already; it stays revoked."
    for recipient in recipients.values():
        own = recipient.uid == owner.uid
        whose = "Your API key" if own else f"The API key of {owner.full_name} ({owner.email})"
        path = (
            f"{notifications.MY_KEYS_PATH}/{key.uid}"
            if own
            else f"{notifications.TENANT_KEYS_PATH}/{key.uid}"
        )
        body = "\n".join(
            [
                f"Hello {recipient.first_name or recipient.full_name},",
                "",
                f"{whose} {label} in {principal.tenant_name} was reported as seen in public "
                f"on {when}, by {_reported_by(reporter, client_address)}.",
                f"Where, as the reporter said: {_where(report.url, report.source)}",
                "",
                done,
                "Create a new key (or rotate this one), move the services that use it to the "
                "new key, and remove the value from where it was seen.",
                "",
                "The key's page in the Keyplane console (link below) lists every report.",
            ]
        )
        await notifications.notify(
            session,
            recipient,
            kind=EventType.API_KEY_LEAKED.value,
            subject=f"API key “{key.name}” was reported leaked"[:255],
            body=body,
            link_path=path,
            dedupe_key=f"leaked:{key.uid}:{as_utc(now).isoformat()}:{recipient.uid}",
            key_uid=key.uid,
        )


async def latest_sightings(
    session: AsyncSession, principal: Principal, key: ApiKey
) -> list[Sighting]:
    """The newest sightings of a key the caller may see (``SHOWN_SIGHTINGS``)."""
    rows = await repository.latest_leaks(session, principal, key.uid, SHOWN_SIGHTINGS)
    return [Sighting(row.reporter, row.url, row.source, row.reported_at) for row in rows]
