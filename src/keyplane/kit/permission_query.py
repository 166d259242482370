"""Permission queries: "does this key satisfy ``invoices.read AND (invoices.write OR admin)``?"

A tenant's service sends a query with ``POST /v1/apiKeys/verify``; this module parses it
into an immutable tree and evaluates the tree against the permissions a key was granted.
Pure: no I/O.

Grammar (EBNF)::

    query    = or_expr ;
    or_expr  = and_expr , { "OR" , and_expr } ;
    and_expr = term , { "AND" , term } ;
    term     = NAME | "(" , or_expr , ")" ;
    NAME     = ? /[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}/, other than "and", "or" and "not" ? ;

- ``AND`` binds tighter than ``OR``: ``a OR b AND c`` means ``a OR (b AND c)``.
- The operators are words, matched without regard to case (``and``, ``And``, ``AND``);
  names are case-sensitive. A word that is exactly ``and``, ``or`` or ``not`` (in any
  case) is therefore never a name.
- Tokens may be separated by any amount of whitespace (space, tab, CR, LF; other spaces
  such as U+00A0 are refused, since they look like a space but are not one). Parentheses
  need no whitespace around them; two names or a name and an operator do.
- ``NOT`` is refused on purpose: a key's rights are stated positively, as the permissions
  it must have. "Any key except one with ``billing``" would let a key with no permissions
  at all through, and would silently start to admit keys when a permission is renamed.
- Bounds, each refused with a clear error: at most 1,000 characters, at most 50 names
  (counted where they occur, repeats included), parentheses nested at most 10 deep.

Errors are :class:`PermissionQueryError` (a ``ValueError``) with a plain-English
``message`` and the 0-based ``position`` of the problem in the text, e.g.
``expected a permission name or "(" at position 14`` or ``unbalanced ")" at position 7``.

The tree is :class:`Permission`, :class:`AllOf` (AND) and :class:`AnyOf` (OR). ``str()``
gives a canonical text (upper-case operators, single spaces, only the parentheses the tree
needs) that parses back to an equal tree, provided the text is within the bounds: the
canonical text of a parsed query never nests deeper or names more than the original, but
it does put a space on each side of an operator, so ``(a OR b)AND(c OR d)`` comes back two
characters longer. The parser keeps the grouping it was given:
``(a AND b) AND c`` is ``AllOf((AllOf((a, b)), c))``, not a flattened ``AllOf((a, b, c))``.

Nothing here recurses without a bound. The parser checks the nesting limit before it
descends into a ``(``, so ten thousand ``(`` give an error, not a ``RecursionError``; and
every tree, parsed or built by hand, is at most :data:`MAX_TREE_DEPTH` deep (enforced when
a node is built), so evaluating, printing and comparing a tree recurse a bounded amount.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "MAX_DEPTH",
    "MAX_NAMES",
    "MAX_QUERY_LENGTH",
    "MAX_TREE_DEPTH",
    "PERMISSION_NAME_PATTERN",
    "PERMISSION_NAME_RE",
    "RESERVED_WORDS",
    "AllOf",
    "AnyOf",
    "Permission",
    "PermissionQuery",
    "PermissionQueryError",
    "is_permission_name",
    "missing_permissions",
    "parse_permission_query",
]

PERMISSION_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
# Use fullmatch, never match: "$" also matches before a trailing "\n".
PERMISSION_NAME_RE: Final = re.compile(PERMISSION_NAME_PATTERN)
# The operator words. The pattern alone would accept them, but a query could never name them.
RESERVED_WORDS: Final = frozenset({"and", "or", "not"})

MAX_QUERY_LENGTH: Final = 1000
MAX_NAMES: Final = 50
MAX_DEPTH: Final = 10
# The deepest tree the parser can build: inside the innermost parentheses, "a OR b AND c" is
# two levels (AnyOf over AllOf), and each of the MAX_DEPTH enclosing levels can add two more.
MAX_TREE_DEPTH: Final = 2 * (MAX_DEPTH + 1)


def is_permission_name(value: str) -> bool:
    """Whether ``value`` can be a permission name (and so can appear in a query)."""
    return PERMISSION_NAME_RE.fullmatch(value) is not None and value.lower() not in RESERVED_WORDS


class PermissionQueryError(ValueError):
    """A query that cannot be parsed: ``message`` in plain English, ``position`` 0-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------------
# The tree


class PermissionQuery(ABC):
    """A parsed query: a :class:`Permission`, an :class:`AllOf` or an :class:`AnyOf`."""

    __slots__ = ()

    # Levels below and including this node: 0 for a Permission.
    depth: int

    @abstractmethod
    def is_satisfied_by(self, granted: AbstractSet[str]) -> bool:
        """Whether a key holding exactly the permissions ``granted`` satisfies the query."""

    @abstractmethod
    def names(self) -> frozenset[str]:
        """Every permission name the query mentions."""


@dataclass(frozen=True, slots=True)
class Permission(PermissionQuery):
    name: str
    depth: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not is_permission_name(self.name):
            raise ValueError(f"not a permission name: {_shorten(repr(self.name))}")

    def is_satisfied_by(self, granted: AbstractSet[str]) -> bool:
        return self.name in granted

    def names(self) -> frozenset[str]:
        return frozenset((self.name,))

    def __str__(self) -> str:
        return self.name


def _check_children(node: AllOf | AnyOf) -> None:
    children = node.children
    if not isinstance(children, tuple):
        raise TypeError(f"{type(node).__name__} children must be a tuple")
    if len(children) < 2:
        # One child would print as that child alone and parse back as something else.
        raise ValueError(f"{type(node).__name__} needs at least two children")
    for child in children:
        if not isinstance(child, PermissionQuery):
            raise TypeError(f"not a permission query: {_shorten(repr(child))}")
    depth = 1 + max(child.depth for child in children)
    if depth > MAX_TREE_DEPTH:
        raise ValueError(f"a permission query may be at most {MAX_TREE_DEPTH} levels deep")
    object.__setattr__(node, "depth", depth)


def _child_text(child: PermissionQuery, parent: type[AllOf | AnyOf]) -> str:
    # Parentheses only where the parser needs them to rebuild the same tree: around an OR
    # inside an AND (AND binds tighter), and around a node inside one of its own kind (the
    # parser keeps explicit grouping rather than flattening it).
    if isinstance(child, AnyOf) or (isinstance(child, AllOf) and parent is AllOf):
        return f"({child})"
    return str(child)


@dataclass(frozen=True, slots=True)
class AllOf(PermissionQuery):
    """``a AND b AND ...``: satisfied when every child is."""

    children: tuple[PermissionQuery, ...]
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_children(self)

    def is_satisfied_by(self, granted: AbstractSet[str]) -> bool:
        return all(child.is_satisfied_by(granted) for child in self.children)

    def names(self) -> frozenset[str]:
        return frozenset[str]().union(*(child.names() for child in self.children))

    def __str__(self) -> str:
        return " AND ".join(_child_text(child, AllOf) for child in self.children)


@dataclass(frozen=True, slots=True)
class AnyOf(PermissionQuery):
    """``a OR b OR ...``: satisfied when at least one child is."""

    children: tuple[PermissionQuery, ...]
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_children(self)

    def is_satisfied_by(self, granted: AbstractSet[str]) -> bool:
        return any(child.is_satisfied_by(granted) for child in self.children)

    def names(self) -> frozenset[str]:
        return frozenset[str]().union(*(child.names() for child in self.children))

    def __str__(self) -> str:
        return " OR ".join(_child_text(child, AnyOf) for child in self.children)


def missing_permissions(query: PermissionQuery, granted: AbstractSet[str]) -> list[str]:
    """What the key lacks, sorted, for the message of a refused verification.

    Empty when ``query`` is satisfied. Otherwise, recursively: a name that is not granted is
    missing; an AND is missing what its failing children are missing; an OR none of whose
    alternatives holds is missing what its first alternative is missing (the one the query's
    author wrote first, rather than a search for the cheapest). Granting the result always
    satisfies the query, though another, smaller set may too.
    """
    missing: set[str] = set()
    _collect_missing(query, granted, missing)
    return sorted(missing)


def _collect_missing(query: PermissionQuery, granted: AbstractSet[str], into: set[str]) -> None:
    # Recursion is bounded by MAX_TREE_DEPTH, which every node enforces when it is built.
    if query.is_satisfied_by(granted):
        return
    if isinstance(query, Permission):
        into.add(query.name)
    elif isinstance(query, AllOf):
        for child in query.children:
            _collect_missing(child, granted, into)
    elif isinstance(query, AnyOf):
        _collect_missing(query.children[0], granted, into)


# ---------------------------------------------------------------------------------------
# The parser

_WHITESPACE = frozenset(" \t\r\n")
_NAME_START = frozenset(string.ascii_letters + string.digits)
_WORD_CHARACTERS = _NAME_START | frozenset("_.:-")
_NOT_SUPPORTED = "is not supported: ask for the permissions a key must have"
# What people type when they expect another syntax.
_CHARACTER_HINTS = {
    "&": 'write "AND"',
    "|": 'write "OR"',
    "!": "negation is not supported; ask for the permissions a key must have",
    '"': "permission names are written without quotes",
    "'": "permission names are written without quotes",
}

_Kind = Literal["name", "and", "or", "(", ")", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    position: int


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_character(character: str) -> str:
    # Only visible ASCII is echoed as itself: anything else could be invisible, look like
    # something it is not, or be unprintable in a log, so it is named by code point.
    if character == '"':
        return "'\"'"
    if "!" <= character <= "~":
        return f'"{character}"'
    name = unicodedata.name(character, "")
    code = f"U+{ord(character):04X}"
    return f"{code} ({name})" if name else code


def _tokens(text: str) -> Iterator[_Token]:
    """Tokens, lazily: an error is raised only when the parser reaches it, so the error
    reported is always the leftmost one."""
    position, length = 0, len(text)
    while True:
        while position < length and text[position] in _WHITESPACE:
            position += 1
        if position == length:
            yield _Token("end", "", position)
            return
        character = text[position]
        if character == "(" or character == ")":
            yield _Token("(" if character == "(" else ")", character, position)
            position += 1
        elif character in _WORD_CHARACTERS:
            start = position
            while position < length and text[position] in _WORD_CHARACTERS:
                position += 1
            word = text[start:position]
            lowered = word.lower()
            if lowered == "and" or lowered == "or":
                yield _Token("and" if lowered == "and" else "or", word, start)
            elif lowered == "not":
                raise PermissionQueryError(f'"{word}" at position {start} {_NOT_SUPPORTED}', start)
            elif word[0] not in _NAME_START:
                raise PermissionQueryError(
                    f'a permission name must start with a letter or a digit: "{_shorten(word)}"'
                    f" at position {start}",
                    start,
                )
            elif len(word) > 64:
                raise PermissionQueryError(
                    f"the permission name at position {start} is longer than 64 characters",
                    start,
                )
            else:
                yield _Token("name", word, start)
        else:
            message = (
                f"unexpected character {_describe_character(character)} at position {position}"
            )
            hint = _CHARACTER_HINTS.get(character)
            raise PermissionQueryError(f"{message}: {hint}" if hint else message, position)


def _at(token: _Token) -> str:
    return "at the end of the query" if token.kind == "end" else f"at position {token.position}"


class _Parser:
    """Recursive descent, one function per grammar rule. The recursion is bounded: a "("
    beyond MAX_DEPTH is refused before the parser descends into it."""

    def __init__(self, text: str) -> None:
        self._tokens = _tokens(text)
        self._token = next(self._tokens)
        self._names = 0
        self._open: list[int] = []  # positions of the "(" not yet closed

    def parse(self) -> PermissionQuery:
        if self._kind() == "end":
            raise PermissionQueryError("the query is empty", 0)
        query = self._or_expr()
        if self._kind() != "end":
            raise self._unexpected_after_operand()
        return query

    def _kind(self) -> _Kind:
        # A method, not an attribute read, so that type checkers do not keep a narrowed
        # kind across calls that advance.
        return self._token.kind

    def _advance(self) -> _Token:
        token = self._token
        self._token = next(self._tokens)
        return token

    def _or_expr(self) -> PermissionQuery:
        alternatives = [self._and_expr()]
        while self._kind() == "or":
            self._advance()
            alternatives.append(self._and_expr())
        return alternatives[0] if len(alternatives) == 1 else AnyOf(tuple(alternatives))

    def _and_expr(self) -> PermissionQuery:
        terms = [self._term()]
        while self._kind() == "and":
            self._advance()
            terms.append(self._term())
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    def _term(self) -> PermissionQuery:
        token = self._token
        if token.kind == "name":
            self._names += 1
            if self._names > MAX_NAMES:
                raise PermissionQueryError(
                    f"too many permission names: at most {MAX_NAMES} are allowed, and name"
                    f" number {MAX_NAMES + 1} is at position {token.position}",
                    token.position,
                )
            self._advance()
            return Permission(token.text)
        if token.kind == "(":
            if len(self._open) == MAX_DEPTH:
                raise PermissionQueryError(
                    f"parentheses are nested too deeply: at most {MAX_DEPTH} levels are"
                    f' allowed, and the "(" at position {token.position} opens level'
                    f" {MAX_DEPTH + 1}",
                    token.position,
                )
            self._open.append(token.position)
            self._advance()
            if self._kind() == ")":
                raise PermissionQueryError(
                    f"empty parentheses at position {token.position}", token.position
                )
            inner = self._or_expr()
            if self._kind() != ")":
                raise self._unexpected_after_operand()
            self._open.pop()
            self._advance()
            return inner
        found = "" if token.kind == "end" else f', found "{token.text}"'
        raise PermissionQueryError(
            f'expected a permission name or "(" {_at(token)}{found}', token.position
        )

    def _unexpected_after_operand(self) -> PermissionQueryError:
        """The error for what follows a complete operand, when it is not "AND", "OR" or the
        ")" or end of text that the context expects."""
        token = self._token
        if token.kind == ")":
            return PermissionQueryError(
                f'unbalanced ")" at position {token.position}', token.position
            )
        if token.kind == "end":
            opened = self._open[-1]
            return PermissionQueryError(
                f'unbalanced "(" at position {opened}: it is never closed', opened
            )
        # A name or "(": two operands side by side.
        return PermissionQueryError(
            f'missing "AND" or "OR" before "{_shorten(token.text)}" at position {token.position}',
            token.position,
        )


def parse_permission_query(text: str) -> PermissionQuery:
    """Parse ``text`` (see the grammar above) or raise :class:`PermissionQueryError`."""
    if len(text) > MAX_QUERY_LENGTH:
        raise PermissionQueryError(
            f"the query is {len(text)} characters long; at most {MAX_QUERY_LENGTH} are allowed",
            MAX_QUERY_LENGTH,
        )
    return _Parser(text).parse()


@functools.lru_cache(maxsize=1024)
def cached_permission_query(text: str) -> PermissionQuery:
    """``parse_permission_query``, once per distinct text: services send the same few
    queries on every call. Errors are not cached (each raises anew)."""
    return parse_permission_query(text)
