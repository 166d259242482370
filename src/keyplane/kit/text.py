"""Rules for text: what storage and logs can take, and what a name may contain.

Two rules, each in one place:

- **Storable text** (every input: path, query, headers, JSON, forms): no NUL and no lone
  UTF-16 surrogate. PostgreSQL cannot store NUL in text, no encoder can write a lone
  surrogate, and both used to surface as 500s with the submitted value in the SQL error.
  The request middleware refuses them before anything reads the request.
- **Visible text** (names of keys and users, descriptions): every character must be one a
  reader sees. Refused, by Unicode property rather than by a hand list of code points:

  * the general categories Cc (controls), Cf (format: zero-width and bidi controls), Cs
    (surrogates), Co (private use), Cn (unassigned), Zl and Zp (line and paragraph
    separators, U+2028 and U+2029);
  * space separators (Zs) other than the ordinary space U+0020: no-break, en, em,
    ideographic and other spaces make two names that look alike;
  * the derived property Default_Ignorable_Code_Point (Unicode's
    DerivedCoreProperties.txt): characters that renderers draw as nothing, although their
    category looks harmless, such as U+034F COMBINING GRAPHEME JOINER (Mn), U+115F and
    U+3164 HANGUL FILLERs (Lo), U+180B..U+180F and the variation selectors.

  Descriptions may span lines: ``\\n`` (and ``\\r\\n``, normalised) is their one exception.
"""

from __future__ import annotations

import bisect
import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON escape that may decode to NUL or to a surrogate; the precise check follows.
_SUSPICIOUS_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

# Default_Ignorable_Code_Point, from Unicode 15.1's DerivedCoreProperties.txt: (first, last).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE_STARTS = [first for first, _ in _DEFAULT_IGNORABLE]

NAME_RULE = (
    "must contain only visible characters and ordinary spaces (no control, formatting, "
    "invisible or line-breaking characters)"
)


def is_default_ignorable(char: str) -> bool:
    point = ord(char)
    index = bisect.bisect_right(_IGNORABLE_STARTS, point) - 1
    return index >= 0 and _DEFAULT_IGNORABLE[index][0] <= point <= _DEFAULT_IGNORABLE[index][1]


def is_visible(char: str) -> bool:
    """Whether ``char`` may appear in a name (see the module docstring)."""
    if char == " ":
        return True
    category = unicodedata.category(char)
    if category in _REFUSED_CATEGORIES or category == "Zs":
        return False
    return not is_default_ignorable(char)


def first_invisible(value: str, *, multiline: bool = False) -> str | None:
    """The first character of ``value`` that the visible-text rule refuses, if any."""
    for char in value:
        if multiline and char == "\n":
            continue
        if not is_visible(char):
            return char
    return None


def describe_character(char: str) -> str:
    """``U+2028 LINE SEPARATOR``: names a refused character without printing it."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def has_unstorable(value: str) -> bool:
    return _UNSTORABLE.search(value) is not None


def unstorable_json_field(text: str) -> str | None:
    """Where decoded JSON text holds a NUL or a lone surrogate: a dotted field path (``""``
    for the document itself), or None when it holds neither. Text that is not valid JSON
    is left to the parser, which refuses it with its own message."""
    # A raw NUL is not valid JSON (control characters must be escaped): the parser refuses
    # it. Raw surrogates are, once decoded the way the parser decodes bytes.
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return ""
    if _SUSPICIOUS_ESCAPE.search(text) is None:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    for path, string in _strings(document, ()):
        if has_unstorable(string):
            return ".".join(path)
    return None


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path, key
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))


_LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\\]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    point = ord(char)
    return f"\\x{point:02x}" if point <= 0xFF else f"\\u{point:04x}"


_LINE_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def escape_for_log(value: str) -> str:
    """One log record stays one line, whatever a client put in a path or a header: control
    and line-breaking characters become visible escapes (and so does the backslash, so that
    an escape cannot be forged either)."""
    # Most values need nothing: printable ASCII (no control characters) without a backslash.
    if value.isascii() and value.isprintable() and "\\" not in value:
        return value
    return _LOG_UNSAFE.sub(_escape_char, value)


def single_line(value: str) -> str:
    """The last line of defence for any log message: control and line-breaking characters
    escaped (tabs kept), backslashes left alone so that fields escaped at their source are
    not escaped twice."""
    return _LINE_BREAKING.sub(_escape_char, value)
