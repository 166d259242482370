"""Validation problems in Keyplane's own words.

Pydantic and FastAPI describe a problem in their own vocabulary ("String should have at
least 1 character", "Value error, ...", a character offset as the field). Every place that
shows a validation problem to a person (the API's error body, console forms, the CLI)
turns each error into a sentence here: the field's name, then the rule it breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})

Describer = Callable[[Mapping[str, Any]], str]


def _ctx(error: Mapping[str, Any], name: str) -> Any:
    context = error.get("ctx") or {}
    return context.get(name)


def _characters(count: Any) -> str:
    return "1 character" if count == 1 else f"{count} characters"


def _too_short(error: Mapping[str, Any]) -> str:
    minimum = _ctx(error, "min_length")
    if minimum in (None, 1):
        return "must not be empty"
    return f"must be at least {_characters(minimum)} long"


def _too_long(error: Mapping[str, Any]) -> str:
    return f"must be at most {_characters(_ctx(error, 'max_length'))} long"


def _too_few_items(error: Mapping[str, Any]) -> str:
    minimum = _ctx(error, "min_length")
    return "must not be empty" if minimum in (None, 1) else f"needs at least {minimum} items"


def _value_error(error: Mapping[str, Any]) -> str:
    # The validators of kit/validation.py raise ValueError with a phrase written for people;
    # pydantic prefixes it with "Value error, ".
    reason = _ctx(error, "error")
    text = str(reason) if reason is not None else str(error.get("msg", ""))
    return text.removeprefix("Value error, ").rstrip(".") or "is not valid"


def _one_of(error: Mapping[str, Any]) -> str:
    expected = _ctx(error, "expected")
    return f"must be one of {expected}" if expected else "is not one of the allowed values"


_DATETIME = "must be a date and time with a time zone, such as 2030-01-31T12:00:00Z"

_PROBLEMS: dict[str, str | Describer] = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_too_short": _too_short,
    "string_too_long": _too_long,
    "string_pattern_mismatch": "contains characters that are not allowed here",
    "too_short": _too_few_items,
    "too_long": lambda error: f"may have at most {_ctx(error, 'max_length')} items",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "greater_than_equal": lambda error: f"must be at least {_ctx(error, 'ge')}",
    "greater_than": lambda error: f"must be greater than {_ctx(error, 'gt')}",
    "less_than_equal": lambda error: f"must be at most {_ctx(error, 'le')}",
    "less_than": lambda error: f"must be less than {_ctx(error, 'lt')}",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "literal_error": _one_of,
    "enum": _one_of,
    "extra_forbidden": "is not a field of this request",
    "value_error": _value_error,
    "assertion_error": _value_error,
    "datetime_type": _DATETIME,
    "datetime_parsing": _DATETIME,
    "datetime_from_date_parsing": _DATETIME,
    "datetime_object_invalid": _DATETIME,
    "timezone_aware": _DATETIME,
    "date_type": "must be a date, such as 2030-01-31",
    "date_parsing": "must be a date, such as 2030-01-31",
    "date_from_datetime_parsing": "must be a date, such as 2030-01-31",
    "url_parsing": "must be a URL",
    "url_type": "must be a URL",
    "url_scheme": "must be an http or https URL",
    "uuid_parsing": "must be a UUID",
    "json_invalid": "is not valid JSON",
}


def describe_problem(error: Mapping[str, Any]) -> str:
    """The rule an error breaks, as the end of a sentence that starts with the field."""
    described = _PROBLEMS.get(str(error.get("type", "")))
    if described is None:
        return "is not valid"
    return described if isinstance(described, str) else described(error)


def split_location(location: Sequence[Any]) -> tuple[str, str]:
    """``("body", "resources", 0, "limit")`` → ``("body", "resources[0].limit")``; the
    document itself is ``"(body)"``."""
    parts = list(location)
    source = "body"
    if parts and str(parts[0]) in _SOURCES:
        source, parts = str(parts[0]), parts[1:]
    field = ""
    for part in parts:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += f".{part}" if field else str(part)
    return source, field or "(body)"


def sentence(field: str, problem: str) -> str:
    """``"metadata.name must not be empty"``, or for the body itself
    ``"the request body must be a JSON object"``."""
    subject = "the request body" if field == "(body)" else field
    return f"{subject} {problem}"


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Each error as ``{"in", "field", "problem"}``: no input value, which may be a secret."""
    described = []
    for error in errors:
        source, field = split_location(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            # FastAPI puts the character offset where the field would be.
            field = "(body)"
        described.append({"in": source, "field": field, "problem": describe_problem(error)})
    return described


def summary(fields: Sequence[Mapping[str, str]], limit: int = 5) -> str:
    """``"metadata.name must not be empty; spec.expiry must be ..."``."""
    return "; ".join(sentence(item["field"], item["problem"]) for item in fields[:limit])
