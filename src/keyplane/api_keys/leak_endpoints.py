"""The two doors of leak reports (``api_keys.leaks``), neither with a Keyplane credential:
anyone's report, and GitHub's secret scanning, signed by GitHub (``api_keys.github``)."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import TypeAdapter, ValidationError

from keyplane.api_keys import leaks
from keyplane.api_keys.github import (
    KEY_IDENTIFIER_HEADER,
    SIGNATURE_HEADER,
    verify_github_signature,
)
from keyplane.api_keys.schemas import (
    GitHubTokenLabel,
    GitHubTokenMatch,
    LeakReportCreate,
    LeakReportReceived,
)
from keyplane.kit.client_address import client_address
from keyplane.kit.db import DbSession
from keyplane.kit.errors import RateLimited, ValidationFailed
from keyplane.kit.problems import describe_errors, summary
from keyplane.models import LeakReporter
from keyplane.runtime import RuntimeDep

router = APIRouter(prefix="/v1/apiKeys", tags=["apiKeys"])

_GITHUB_MATCHES = TypeAdapter(list[GitHubTokenMatch])


async def leak_report_allowance(request: Request, runtime: RuntimeDep) -> None:
    """Every report takes a token of its address's bucket (shared across instances with
    Redis, ``runtime.limiter``), before its body is even read: 429 with Retry-After once
    it is empty. A dependency, so that it runs before the body is parsed."""
    settings = runtime.settings
    subject = f"leaks:addr:{client_address(request)}"
    rate, burst = settings.leak_report_rate_per_second, settings.leak_report_burst
    if not await runtime.limiter.record_failure(subject, rate, burst):
        retry_after = await runtime.limiter.retry_after(subject, rate, burst)
        raise RateLimited(
            "Too many leak reports from this address; wait before sending more.",
            code="TooManyLeakReports",
            details={"retryAfterSeconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


def _check_count(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise ValidationFailed(
            f"A report may hold at most {limit} values; send the rest in further reports.",
            code="TooManyLeaks",
            details={"field": field, "limit": limit},
        )


@router.post(
    "/leaks",
    status_code=202,
    response_model=LeakReportReceived,
    operation_id="v1ApiKeysLeaksReport",
    dependencies=[Depends(leak_report_allowance)],
)
async def report_leaks(
    body: LeakReportCreate, request: Request, session: DbSession, runtime: RuntimeDep
) -> LeakReportReceived:
    """Report API key values seen where they should not be (no credential needed, as for
    GitHub's credential revocation API). Each value that is a key is revoked at once, or
    flagged, by its tenant's policy, and its owner and tenant admins are told. The answer
    is the same whatever the values were. Rate limited per client address."""
    _check_count(len(body.leaks), runtime.settings.leak_report_max_items, "leaks")
    await leaks.report_leaks(
        session,
        runtime,
        [leaks.LeakReport(item.value, item.url, item.source) for item in body.leaks],
        reporter=LeakReporter.REPORT,
        client_address=client_address(request),
    )
    return LeakReportReceived(received=len(body.leaks))


@router.post(
    "/leaks/github",
    response_model=list[GitHubTokenLabel],
    operation_id="v1ApiKeysLeaksGitHub",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _GITHUB_MATCHES.json_schema(by_alias=True)}},
        }
    },
)
async def report_github_leaks(
    request: Request,
    session: DbSession,
    runtime: RuntimeDep,
    key_identifier: Annotated[str | None, Header(alias=KEY_IDENTIFIER_HEADER)] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> list[GitHubTokenLabel]:
    """GitHub's secret scanning partner endpoint: matches of Keyplane's key format that
    GitHub found in public, signed by GitHub (404 when this server has no GitHub keys
    configured, 401 for a request GitHub did not sign). Acts on each key as a report
    does, and labels each match ``true_positive`` (a Keyplane key) or ``false_positive``,
    naming it by its SHA-256 (``token_hash``)."""
    raw = await request.body()
    verify_github_signature(
        runtime.settings.github_secret_scanning_keys_file, key_identifier, signature, raw
    )
    try:
        matches = _GITHUB_MATCHES.validate_json(raw)
    except ValidationError as exc:
        fields = describe_errors(exc.errors())
        raise ValidationFailed(
            f"The request is invalid: {summary(fields)}.", details={"fields": fields}
        ) from None
    _check_count(len(matches), runtime.settings.leak_report_max_items, "(body)")
    real = await leaks.report_leaks(
        session,
        runtime,
        [leaks.LeakReport(match.token, match.url, match.source) for match in matches],
        reporter=LeakReporter.GITHUB,
        client_address=client_address(request),
    )
    return [
        GitHubTokenLabel(
            token_hash=hashlib.sha256(match.token.encode("utf-8", "surrogatepass")).hexdigest(),
            token_type=match.type,
            label="true_positive" if match.token.strip() in real else "false_positive",
        )
        for match in matches
    ]
