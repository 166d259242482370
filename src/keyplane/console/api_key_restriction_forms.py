"""The Restrictions section of the API key forms as typed, and what it asks of the service.

Every rule is the services': this module only turns the form into the restrictions the
API's request bodies carry (validated by the same schema, ``ApiKeyRestrictionsSpec``),
and the service's refusals into messages next to the fields.

What the forms send to the service:

- on create, every restriction the form sets (admin-only ones only from tenant admins,
  who alone see them); nothing for a section left as it came (unrestricted);
- on edit, only the restrictions whose value differs from the key's. The service refuses
  a plain user only when an admin-only value changes, so a user renaming a key an admin
  gave rate limits must not send them back; and credits are compared with what the form
  showed (they are spent while it is open), not with what is stored by the time it is
  posted, so that saving a name never resets a key's remaining uses;
- nothing from a form without the section (hidden fields mark it and its admin-only
  part), nor admin-only values from anyone but a tenant admin, whatever is posted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from keyplane.api_keys.restrictions import Credits, Restrictions
from keyplane.api_keys.schemas import (
    MAX_KEY_RATE_LIMITS,
    ApiKeyRestrictionsSpec,
    restriction_changes,
)
from keyplane.auth.principal import Principal
from keyplane.kit.cidr import InvalidRange, normalised_ranges
from keyplane.kit.credits import RefillInterval
from keyplane.kit.errors import KeyplaneError
from keyplane.kit.problems import describe_problem
from keyplane.kit.validation import MAX_DOCUMENT_BYTES

RATE_LIMIT_ROWS = 3
# Longer than any document the schema keeps: a clear message rather than parsing megabytes.
MAX_META_CHARACTERS = 4 * MAX_DOCUMENT_BYTES

# Form fields by request-body field (``details["field"]`` of a service error, the
# location of a schema error), and the words a message starts with.
FIELDS = {
    "spec.scopes": "scopes",
    "spec.allowedCidrs": "allowed_cidrs",
    "spec.permissions": "permissions",
    "spec.permissionRoles": "permission_roles",
    "spec.rateLimits": "rate_limits",
    "spec.credits": "credits",
    "spec.ownerId": "owner_id",
    "spec.meta": "meta",
}
_LABELS = {
    "scopes": "Scopes",
    "allowed_cidrs": "Address ranges",
    "permissions": "Permissions",
    "permission_roles": "Permission roles",
    "rate_limits": "Rate limits",
    "credits": "Credits",
    "owner_id": "Owner id",
    "meta": "Metadata",
}
_PART_LABELS = {
    "limit": "limit",
    "windowSeconds": "window",
    "name": "name",
    "remaining": "remaining uses",
    "amount": "refill amount",
    "day": "refill day",
    "interval": "refill",
}


class RestrictionErrors(Exception):
    """Problems with what the Restrictions section says, by form field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass
class RateLimitRow:
    limit: str = ""
    window: str = "1"
    name: str = ""


@dataclass
class RestrictionInputs:
    """The section's fields as typed (or as the key has them), to show them again."""

    scopes_mode: str = "all"
    scopes: list[str] = field(default_factory=list)
    allowed_cidrs: str = ""
    permissions: list[str] = field(default_factory=list)
    permission_roles: list[str] = field(default_factory=list)
    rate_limits: list[RateLimitRow] = field(default_factory=list)
    credits_remaining: str = ""
    credits_refill: str = "none"
    credits_refill_amount: str = ""
    credits_refill_day: str = "1"
    # On edit: the remaining uses the form showed ("" for none), to tell an edit of the
    # credits from uses spent while the form was open.
    credits_shown: str = ""
    owner_id: str = ""
    meta: str = ""
    # Whether the posted form had the section, and its admin-only part: a form without
    # them (one opened before they existed) changes nothing they hold.
    shown: bool = True
    admin_shown: bool = True

    def __post_init__(self) -> None:
        while len(self.rate_limits) < RATE_LIMIT_ROWS:
            self.rate_limits.append(RateLimitRow())

    @classmethod
    def of(cls, restrictions: Restrictions) -> RestrictionInputs:
        credits = restrictions.credits
        refill = credits.refill if credits else None
        remaining = str(credits.remaining) if credits else ""
        return cls(
            scopes_mode="all" if restrictions.scopes is None else "some",
            scopes=list(restrictions.scopes or ()),
            allowed_cidrs="\n".join(restrictions.allowed_cidrs or ()),
            permissions=list(restrictions.permissions),
            permission_roles=list(restrictions.permission_roles),
            rate_limits=[
                RateLimitRow(str(limit.limit), str(limit.window_seconds), limit.name)
                for limit in restrictions.rate_limits
            ],
            credits_remaining=remaining,
            credits_refill=refill.interval.value if refill else "none",
            credits_refill_amount=str(refill.amount) if refill else "",
            credits_refill_day=str(refill.day) if refill else "1",
            credits_shown=remaining,
            owner_id=restrictions.owner_id or "",
            meta=(
                json.dumps(restrictions.meta, indent=2, ensure_ascii=False)
                if restrictions.meta is not None
                else ""
            ),
        )

    @classmethod
    def from_form(cls, form: FormData) -> RestrictionInputs:
        def text(name: str, default: str = "") -> str:
            value = form.get(name)
            return value if isinstance(value, str) else default

        def texts(name: str) -> list[str]:
            return [value for value in form.getlist(name) if isinstance(value, str)]

        # As many rows as the form had (more than 3 when the key has more limits).
        shown = text("rate_limit_rows")
        count = int(shown) if shown.isdigit() else RATE_LIMIT_ROWS
        rows = [
            RateLimitRow(
                text(f"rate_limit_{index}_limit"),
                text(f"rate_limit_{index}_window", "1"),
                text(f"rate_limit_{index}_name"),
            )
            for index in range(max(1, min(count, MAX_KEY_RATE_LIMITS)))
        ]
        return cls(
            scopes_mode=text("scopes_mode", "all"),
            scopes=texts("scopes"),
            allowed_cidrs=text("allowed_cidrs"),
            permissions=texts("permissions"),
            permission_roles=texts("permission_roles"),
            rate_limits=rows,
            credits_remaining=text("credits_remaining"),
            credits_refill=text("credits_refill", "none"),
            credits_refill_amount=text("credits_refill_amount"),
            credits_refill_day=text("credits_refill_day", "1"),
            credits_shown=text("credits_shown"),
            owner_id=text("owner_id"),
            meta=text("meta"),
            shown="restrictions_shown" in form,
            admin_shown="restrictions_admin_shown" in form,
        )


# --- from the form to the service -----------------------------------------------------


def _schema_message(error: dict[str, Any], rows: list[int]) -> tuple[str, str]:
    """The form field and a sentence; ``rows``: the form's row number of each rate limit."""
    location = list(error["loc"])
    field_name = FIELDS.get(f"spec.{location[0]}", "form") if location else "form"
    label = _LABELS.get(field_name, "Restrictions")
    if field_name == "rate_limits" and len(location) > 1 and isinstance(location[1], int):
        index = location[1]
        label = f"Rate limit {rows[index] if index < len(rows) else index + 1}"
    parts = [_PART_LABELS.get(str(part), str(part)) for part in location[1:]]
    parts = [part for part in parts if not part.isdigit()]
    if parts:
        label = f"{label}: {parts[-1]}"
    problem = describe_problem(error)
    joiner = ": " if error.get("type") == "value_error" and not parts else " "
    return field_name, f"{label}{joiner}{problem}."


def _not_json(constant: str) -> Any:
    # Python reads NaN and Infinity; JSON has no such values, and a database may refuse them.
    raise ValueError(f"{constant} is not a JSON value")


def _meta(text: str, errors: dict[str, str]) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped:
        return None
    if len(stripped) > MAX_META_CHARACTERS:
        errors["meta"] = f"Metadata is too long: at most {MAX_DOCUMENT_BYTES} bytes are kept."
        return None
    try:
        value = json.loads(stripped, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        errors["meta"] = (
            f"Metadata is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        )
        return None
    except ValueError as exc:
        errors["meta"] = f"Metadata is not valid JSON: {exc}."
        return None
    except RecursionError:
        errors["meta"] = "Metadata nests too deeply."
        return None
    if not isinstance(value, dict):
        errors["meta"] = (
            'Metadata must be a JSON object, such as {"plan": "pro"}: not a list, a string '
            "or a number."
        )
        return None
    return value


def _credits(inputs: RestrictionInputs, errors: dict[str, str]) -> dict[str, Any] | None:
    remaining = inputs.credits_remaining.strip()
    interval = inputs.credits_refill
    if interval not in {"none", *RefillInterval}:
        errors["credits"] = "Choose how the credits are refilled."
        return None
    if not remaining:
        if interval != "none":
            errors["credits"] = "Give the remaining uses as well as their refill."
        return None
    body: dict[str, Any] = {"remaining": remaining}
    if interval != "none":
        amount = inputs.credits_refill_amount.strip()
        if not amount:
            errors["credits"] = (
                f"Give the refill amount: the uses the key has after a {interval} refill."
            )
            return None
        refill: dict[str, Any] = {"interval": interval, "amount": amount}
        if interval == RefillInterval.MONTHLY:
            refill["day"] = inputs.credits_refill_day.strip() or "1"
        body["refill"] = refill
    return body


def _rate_limits(inputs: RestrictionInputs) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows with a limit, and their numbers on the form. A row without a limit is no
    limit, whatever its name: clearing the limit is how one is removed (the name of a
    stored one is filled in)."""
    numbered = [
        (number, row) for number, row in enumerate(inputs.rate_limits, 1) if row.limit.strip()
    ]
    limits = [
        {"limit": row.limit.strip(), "windowSeconds": row.window, "name": row.name.strip() or None}
        for _number, row in numbered
    ]
    return limits, [number for number, _row in numbered]


def requested_values(inputs: RestrictionInputs, *, admin: bool) -> dict[str, Any]:
    """Every restriction the section shows, as the service takes them (a field of
    ``Restrictions`` to its value); admin-only ones only for tenant admins, who alone see
    them (a plain user's form never changes them, whatever it posts). Raises
    ``RestrictionErrors`` with every problem found."""
    errors: dict[str, str] = {}
    spec: dict[str, Any] = {}
    rows: list[int] = []
    if not inputs.shown:
        return {}
    checked = sorted(set(inputs.scopes))
    if inputs.scopes_mode == "some":
        if not checked:
            errors["scopes"] = "Check at least one scope, or choose “All that the owner may do”."
        spec["scopes"] = checked
    elif checked:
        errors["scopes"] = (
            "Scopes are checked, but “All that the owner may do” is chosen: choose “Only the "
            "scopes checked”, or uncheck them."
        )
    else:
        spec["scopes"] = None
    ranges = [part for part in re.split(r"[\s,]+", inputs.allowed_cidrs) if part]
    spec["allowedCidrs"] = ranges or None
    if admin and inputs.admin_shown:
        spec["permissions"] = sorted(set(inputs.permissions))
        spec["permissionRoles"] = sorted(set(inputs.permission_roles))
        spec["rateLimits"], rows = _rate_limits(inputs)
        spec["credits"] = _credits(inputs, errors)
        spec["ownerId"] = inputs.owner_id.strip() or None
        spec["meta"] = _meta(inputs.meta, errors)
    try:
        values = restriction_changes(ApiKeyRestrictionsSpec.model_validate(spec))
    except ValidationError as exc:
        for error in exc.errors():
            name, message = _schema_message(dict(error), rows)
            errors.setdefault(name, message)
        values = {}
    if errors:
        raise RestrictionErrors(errors)
    return values


Parsed = tuple[dict[str, Any], dict[str, str]]


def for_create(inputs: RestrictionInputs, principal: Principal) -> Parsed:
    """What a new key is given: only what is set (the service reads None as unset); and
    the problems found, by form field."""
    try:
        values = requested_values(inputs, admin=principal.is_tenant_admin)
    except RestrictionErrors as exc:
        return {}, exc.errors
    return {name: value for name, value in values.items() if value not in (None, [], ())}, {}


def _shown_credits(inputs: RestrictionInputs, current: Restrictions) -> Credits | None:
    shown = inputs.credits_shown.strip()
    if not shown:
        return None
    try:
        remaining = int(shown)
    except ValueError:
        return current.credits
    refill = current.credits.refill if current.credits else None
    return Credits(remaining, refill)


def _same(name: str, value: Any, current: Restrictions, inputs: RestrictionInputs) -> bool:
    before = getattr(current, name)
    if name == "credits":
        return bool(value == _shown_credits(inputs, current))
    if value is None or before is None:
        return value is None and before is None
    if name in ("scopes", "permissions", "permission_roles"):
        return tuple(sorted(set(value))) == tuple(sorted(before))
    if name == "allowed_cidrs":
        try:
            return tuple(normalised_ranges(value)) == tuple(before)
        except InvalidRange:
            return False
    if name == "rate_limits":
        return tuple(value) == tuple(before)
    return bool(value == before)


def for_update(inputs: RestrictionInputs, principal: Principal, current: Restrictions) -> Parsed:
    """Only the restrictions the form changes (see the module docstring); and the
    problems found, by form field."""
    try:
        values = requested_values(inputs, admin=principal.is_tenant_admin)
    except RestrictionErrors as exc:
        return {}, exc.errors
    changed = {
        name: value for name, value in values.items() if not _same(name, value, current, inputs)
    }
    return changed, {}


def error_field(exc: KeyplaneError) -> str | None:
    """The Restrictions field a service error is about, if it is about one."""
    return FIELDS.get(str((exc.details or {}).get("field", "")))
