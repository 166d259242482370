"""The permission query language: names, grammar, errors and their positions, bounds, the
tree's behaviour, and properties (canonical text round-trips; evaluation agrees with a
plain recursive reference)."""

from __future__ import annotations

import dataclasses
from collections.abc import Set as AbstractSet

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from keyplane.kit.permission_query import (
    MAX_DEPTH,
    MAX_NAMES,
    MAX_QUERY_LENGTH,
    MAX_TREE_DEPTH,
    PERMISSION_NAME_PATTERN,
    PERMISSION_NAME_RE,
    AllOf,
    AnyOf,
    Permission,
    PermissionQuery,
    PermissionQueryError,
    is_permission_name,
    missing_permissions,
    parse_permission_query,
)

parse = parse_permission_query


def p(name: str) -> Permission:
    return Permission(name)


def all_of(*children: PermissionQuery) -> AllOf:
    return AllOf(children)


def any_of(*children: PermissionQuery) -> AnyOf:
    return AnyOf(children)


def error_of(text: str) -> PermissionQueryError:
    with pytest.raises(PermissionQueryError) as caught:
        parse(text)
    return caught.value


# --- Names ---------------------------------------------------------------------------


def test_the_name_pattern_is_the_documented_one() -> None:
    assert PERMISSION_NAME_PATTERN == r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
    assert PERMISSION_NAME_RE.pattern == PERMISSION_NAME_PATTERN


@pytest.mark.parametrize(
    "name",
    ["a", "A", "7", "invoices.read", "billing:write", "v2-api_keys.read", "x" * 64, "android",
     "order", "and_more", "or.x", "nothing", "AND1", "a:"],
)  # fmt: skip
def test_permission_names(name: str) -> None:
    assert is_permission_name(name)
    assert parse(name) == Permission(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "_a", ".a", ":a", "-a", "a b", "a*", "é", "a\n", "\na", "a\x00",
     "and", "AND", "Or", "not", "NOT", "nOt"],
)  # fmt: skip
def test_not_permission_names(name: str) -> None:
    assert not is_permission_name(name)
    with pytest.raises(ValueError, match="not a permission name"):
        Permission(name)


def test_names_are_case_sensitive() -> None:
    assert parse("Admin") != parse("admin")
    assert not parse("Admin").is_satisfied_by({"admin"})
    assert parse("Admin").is_satisfied_by({"Admin"})


# --- Grammar -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a OR b AND c", any_of(p("a"), all_of(p("b"), p("c")))),
        ("a AND b OR c", any_of(all_of(p("a"), p("b")), p("c"))),
        ("a AND b OR c AND d", any_of(all_of(p("a"), p("b")), all_of(p("c"), p("d")))),
        ("(a OR b) AND c", all_of(any_of(p("a"), p("b")), p("c"))),
        ("a AND (b OR c)", all_of(p("a"), any_of(p("b"), p("c")))),
        ("a AND b AND c", all_of(p("a"), p("b"), p("c"))),
        ("a OR b OR c", any_of(p("a"), p("b"), p("c"))),
        # Explicit grouping is kept, not flattened.
        ("(a AND b) AND c", all_of(all_of(p("a"), p("b")), p("c"))),
        ("a OR (b OR c)", any_of(p("a"), any_of(p("b"), p("c")))),
        ("((a))", p("a")),
        ("(a AND b)", all_of(p("a"), p("b"))),
        (
            "invoices.read AND (invoices.write OR admin)",
            all_of(p("invoices.read"), any_of(p("invoices.write"), p("admin"))),
        ),
    ],
)
def test_precedence_and_grouping(text: str, tree: PermissionQuery) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(("and_word", "or_word"), [("and", "or"), ("And", "Or"), ("aNd", "oR")])
def test_operators_are_case_insensitive(and_word: str, or_word: str) -> None:
    assert parse(f"a {and_word} b {or_word} c") == parse("a AND b OR c")


@pytest.mark.parametrize(
    "text",
    ["a AND (b OR c)", "  a AND (b OR c)  ", "a\tAND\n(b\r\nOR c)", "a AND(b OR c)",
     "a   AND   (  b    OR   c  )"],
)  # fmt: skip
def test_whitespace_is_any_amount_and_optional_around_parentheses(text: str) -> None:
    assert parse(text) == all_of(p("a"), any_of(p("b"), p("c")))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a  and  (b   or c)", "a AND (b OR c)"),
        ("((a))", "a"),
        ("(a AND b) AND c", "(a AND b) AND c"),
        ("a or (b and c)", "a OR b AND c"),
        ("(a OR b)AND(c OR d)", "(a OR b) AND (c OR d)"),
        ("a OR (b OR c)", "a OR (b OR c)"),
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    assert str(parse(text)) == canonical
    assert parse(canonical) == parse(text)


# --- Errors --------------------------------------------------------------------------

NOT_SUPPORTED = "is not supported: ask for the permissions a key must have"
MUST_START = "a permission name must start with a letter or a digit"


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "the query is empty", 0),
        ("   \t\n ", "the query is empty", 0),
        ("a b", 'missing "AND" or "OR" before "b" at position 2', 2),
        ("a (b)", 'missing "AND" or "OR" before "(" at position 2', 2),
        ("(a) b", 'missing "AND" or "OR" before "b" at position 4', 4),
        ("(a b)", 'missing "AND" or "OR" before "b" at position 3', 3),
        ("a AND", 'expected a permission name or "(" at the end of the query', 5),
        ("a AND   ", 'expected a permission name or "(" at the end of the query', 8),
        ("a OR", 'expected a permission name or "(" at the end of the query', 4),
        ("AND a", 'expected a permission name or "(" at position 0, found "AND"', 0),
        ("or a", 'expected a permission name or "(" at position 0, found "or"', 0),
        ("a AND OR b", 'expected a permission name or "(" at position 6, found "OR"', 6),
        ("a AND )", 'expected a permission name or "(" at position 6, found ")"', 6),
        (")", 'expected a permission name or "(" at position 0, found ")"', 0),
        ("(a", 'unbalanced "(" at position 0: it is never closed', 0),
        ("(a AND (b)", 'unbalanced "(" at position 0: it is never closed', 0),
        ("a AND ((b", 'unbalanced "(" at position 7: it is never closed', 7),
        ("a)", 'unbalanced ")" at position 1', 1),
        ("(a))", 'unbalanced ")" at position 3', 3),
        ("invoices.read AND b) OR c", 'unbalanced ")" at position 19', 19),
        ("()", "empty parentheses at position 0", 0),
        ("a AND ( )", "empty parentheses at position 6", 6),
        ("NOT a", f'"NOT" at position 0 {NOT_SUPPORTED}', 0),
        ("a AND not b", f'"not" at position 6 {NOT_SUPPORTED}', 6),
        ("a NOT b", f'"NOT" at position 2 {NOT_SUPPORTED}', 2),
        ("_a", f'{MUST_START}: "_a" at position 0', 0),
        ("a AND .b", f'{MUST_START}: ".b" at position 6', 6),
        ("a AND -", f'{MUST_START}: "-" at position 6', 6),
        ("a OR " + "x" * 65, "the permission name at position 5 is longer than 64 characters", 5),
        ("a * b", 'unexpected character "*" at position 2', 2),
        ("a, b", 'unexpected character "," at position 1', 1),
        ("a && b", 'unexpected character "&" at position 2: write "AND"', 2),
        ("a || b", 'unexpected character "|" at position 2: write "OR"', 2),
        (
            "!a",
            'unexpected character "!" at position 0: negation is not supported; ask for the'
            " permissions a key must have",
            0,
        ),
        (
            '"a"',
            """unexpected character '"' at position 0: permission names are written without"""
            " quotes",
            0,
        ),
        (
            "a AND é",
            "unexpected character U+00E9 (LATIN SMALL LETTER E WITH ACUTE) at position 6",
            6,
        ),
    ],
)  # fmt: skip
def test_error_messages_and_positions(text: str, message: str, position: int) -> None:
    error = error_of(text)
    assert isinstance(error, ValueError)
    assert error.message == message
    assert str(error) == message
    assert error.position == position


def test_the_leftmost_problem_is_reported() -> None:
    assert error_of("a b AND é").position == 2
    assert error_of("a é b c").position == 2
    assert error_of("a AND NOT (").position == 6


@pytest.mark.parametrize(
    ("character", "described"),
    [
        ("\u200b", "U+200B (ZERO WIDTH SPACE)"),
        ("\u00a0", "U+00A0 (NO-BREAK SPACE)"),
        ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("\u0430", "U+0430 (CYRILLIC SMALL LETTER A)"),
        ("\uff21", "U+FF21 (FULLWIDTH LATIN CAPITAL LETTER A)"),
        ("\U0001f511", "U+1F511 (KEY)"),
        ("\x00", "U+0000"),
        ("\x1b", "U+001B"),
        ("\ud800", "U+D800"),
        ("\x0b", "U+000B"),
    ],
)
def test_odd_characters_are_named_by_code_point(character: str, described: str) -> None:
    # Visible ASCII only is echoed: the message must be safe to show and to log.
    error = error_of(f"ab AND c{character}d")
    assert error.message == f"unexpected character {described} at position 8"
    assert error.position == 8
    assert error.message.isascii()


# --- Bounds --------------------------------------------------------------------------


def test_the_longest_query_is_accepted_and_one_more_character_refused() -> None:
    longest = "a AND " + " " * (MAX_QUERY_LENGTH - 7) + "b"
    assert len(longest) == MAX_QUERY_LENGTH
    assert parse(longest) == all_of(p("a"), p("b"))
    error = error_of(longest + " ")
    assert error.message == "the query is 1001 characters long; at most 1000 are allowed"
    assert error.position == MAX_QUERY_LENGTH


def test_fifty_names_are_accepted_and_the_fifty_first_refused() -> None:
    names = [f"p{index}" for index in range(MAX_NAMES + 1)]
    fifty = " OR ".join(names[:MAX_NAMES])
    assert parse(fifty).names() == frozenset(names[:MAX_NAMES])
    # Repeats count: the bound is on the size of the query, not of its set of names.
    assert isinstance(parse(" AND ".join(["a"] * MAX_NAMES)), AllOf)
    too_many = fifty + " OR p50"
    error = error_of(too_many)
    assert error.position == too_many.index("p50")
    assert error.message == (
        "too many permission names: at most 50 are allowed, and name number 51 is at"
        f" position {error.position}"
    )


def test_ten_levels_of_parentheses_are_accepted_and_the_eleventh_refused() -> None:
    assert parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH) == p("a")
    error = error_of("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    assert error.position == MAX_DEPTH
    assert error.message == (
        'parentheses are nested too deeply: at most 10 levels are allowed, and the "(" at'
        " position 10 opens level 11"
    )
    # Depth is nesting, not the number of groups.
    assert parse(" AND ".join(["(a OR b)"] * 20)).depth == 2


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("(" * 10_000, MAX_QUERY_LENGTH),
        ("(" * MAX_QUERY_LENGTH, MAX_DEPTH),
        ("a AND " + "(" * 500 + "b" + ")" * 400, 6 + MAX_DEPTH),
        (")" * MAX_QUERY_LENGTH, 0),
    ],
)
def test_deep_nesting_is_a_clean_error(text: str, position: int) -> None:
    assert error_of(text).position == position


def deepest_query(levels: int) -> str:
    # Inside the innermost parentheses "x OR y AND z" (an AnyOf over an AllOf); each
    # enclosing level wraps the previous one the same way.
    text = "x OR y AND z"
    for _ in range(levels):
        text = f"x OR y AND ({text})"
    return text


def test_the_deepest_parsable_tree_is_within_the_tree_bound() -> None:
    query = parse(deepest_query(MAX_DEPTH))
    assert query.depth == MAX_TREE_DEPTH
    assert parse(str(query)) == query
    assert query.is_satisfied_by({"x"})
    assert query.is_satisfied_by({"y", "z"})
    assert not query.is_satisfied_by({"y"})
    assert error_of(deepest_query(MAX_DEPTH + 1)).position > 0


def test_hand_built_trees_are_bounded_too() -> None:
    tree: PermissionQuery = p("a")
    for level in range(MAX_TREE_DEPTH):
        tree = (all_of if level % 2 else any_of)(tree, p("b"))
    assert tree.depth == MAX_TREE_DEPTH
    with pytest.raises(ValueError, match="at most 22 levels deep"):
        all_of(tree, p("c"))


# --- The tree ------------------------------------------------------------------------


def test_composites_need_a_tuple_of_two_or_more_queries() -> None:
    with pytest.raises(ValueError, match="at least two children"):
        AllOf((p("a"),))
    with pytest.raises(ValueError, match="at least two children"):
        AnyOf(())
    with pytest.raises(TypeError, match="must be a tuple"):
        AllOf([p("a"), p("b")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a permission query"):
        AnyOf((p("a"), "b"))  # type: ignore[arg-type]


def test_the_tree_is_immutable_and_hashable() -> None:
    query = parse("a AND (b OR c)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.children = ()  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p("a").name = "b"  # type: ignore[misc]
    assert len({query, parse("a and (b or c)"), parse("a OR b")}) == 2


@pytest.mark.parametrize(
    ("text", "granted", "satisfied", "missing"),
    [
        ("a", set(), False, ["a"]),
        ("a", {"a"}, True, []),
        ("a AND b", {"a"}, False, ["b"]),
        ("a AND b AND c", set(), False, ["a", "b", "c"]),
        ("a OR b", set(), False, ["a"]),
        ("a OR b", {"b"}, True, []),
        ("(b AND c) OR a", set(), False, ["b", "c"]),
        ("(b AND c) OR a", {"c"}, False, ["b"]),
        ("invoices.read AND (invoices.write OR admin)", {"admin"}, False, ["invoices.read"]),
        (
            "invoices.read AND (invoices.write OR admin)",
            set(),
            False,
            ["invoices.read", "invoices.write"],
        ),
        ("invoices.read AND (invoices.write OR admin)", {"invoices.read", "admin"}, True, []),
        ("a AND a AND (a OR b)", set(), False, ["a"]),
    ],
)
def test_evaluation_and_missing_permissions(
    text: str, granted: set[str], satisfied: bool, missing: list[str]
) -> None:
    query = parse(text)
    assert query.is_satisfied_by(granted) is satisfied
    assert query.is_satisfied_by(frozenset(granted)) is satisfied
    assert missing_permissions(query, granted) == missing


def test_names() -> None:
    assert parse("a AND (b OR a) AND c").names() == frozenset({"a", "b", "c"})
    assert parse("a").names() == frozenset({"a"})


# --- Properties ----------------------------------------------------------------------

POOL = ["a", "b", "c", "d", "e"]
names = st.from_regex(PERMISSION_NAME_RE, fullmatch=True).filter(is_permission_name)


def trees(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[PermissionQuery]:
    def extend(children: st.SearchStrategy[PermissionQuery]) -> st.SearchStrategy[PermissionQuery]:
        groups = st.lists(children, min_size=2, max_size=4).map(tuple)
        return st.one_of(groups.map(AllOf), groups.map(AnyOf))

    return st.recursive(leaves.map(Permission), extend, max_leaves=20)


def paren_depth(text: str) -> int:
    depth = deepest = 0
    for character in text:
        depth += character == "("
        depth -= character == ")"
        deepest = max(deepest, depth)
    return deepest


def within_bounds(text: str) -> bool:
    return len(text) <= MAX_QUERY_LENGTH and paren_depth(text) <= MAX_DEPTH


def reference(query: PermissionQuery, granted: AbstractSet[str]) -> bool:
    if isinstance(query, Permission):
        return query.name in granted
    assert isinstance(query, AllOf | AnyOf)
    results = [reference(child, granted) for child in query.children]
    return all(results) if isinstance(query, AllOf) else any(results)


@given(trees(names))
def test_canonical_text_round_trips(query: PermissionQuery) -> None:
    text = str(query)
    assume(within_bounds(text))
    assert parse(text) == query
    assert str(parse(text)) == text


@given(trees(st.sampled_from(POOL)), st.data())
def test_any_spelling_of_a_tree_parses_to_it(query: PermissionQuery, data: st.DataObject) -> None:
    draw = data.draw
    space = st.sampled_from([" ", "  ", "\t", "\n", " \r\n "])
    gap = st.sampled_from(["", " ", "\t"])

    def spell(node: PermissionQuery) -> str:
        if isinstance(node, Permission):
            text = node.name
        else:
            assert isinstance(node, AllOf | AnyOf)
            word = "and" if isinstance(node, AllOf) else "or"
            parts = [spell_child(child, type(node)) for child in node.children]
            text = parts[0]
            for part in parts[1:]:
                operator = "".join(
                    letter.upper() if draw(st.booleans()) else letter for letter in word
                )
                text += draw(space) + operator + draw(space) + part
        return text

    def spell_child(child: PermissionQuery, parent: type[AllOf | AnyOf]) -> str:
        text = spell(child)
        needed = isinstance(child, AnyOf) or (isinstance(child, AllOf) and parent is AllOf)
        if needed or draw(st.booleans()):
            text = "(" + draw(gap) + text + draw(gap) + ")"
        return text

    text = draw(gap) + spell(query) + draw(gap)
    assume(within_bounds(text))
    assert parse(text) == query


@given(trees(st.sampled_from(POOL)), st.frozensets(st.sampled_from(POOL)))
def test_evaluation_agrees_with_the_reference(
    query: PermissionQuery, granted: frozenset[str]
) -> None:
    assert query.is_satisfied_by(granted) == reference(query, granted)
    assert query.is_satisfied_by(set(granted)) == reference(query, granted)


@given(trees(st.sampled_from(POOL)), st.frozensets(st.sampled_from(POOL)))
def test_missing_permissions_explain_a_refusal(
    query: PermissionQuery, granted: frozenset[str]
) -> None:
    missing = missing_permissions(query, granted)
    assert missing == sorted(set(missing))
    assert (missing == []) == query.is_satisfied_by(granted)
    assert set(missing) <= query.names() - granted
    # Granting what is reported missing is always enough.
    assert query.is_satisfied_by(granted | set(missing))


def parses_or_fails_cleanly(text: str) -> None:
    """Either a query whose canonical text round-trips, or an error inside the text; never
    another exception."""
    try:
        query = parse(text)
    except PermissionQueryError as caught:
        error = caught
    else:
        assert parse(str(query)) == query
        return
    assert 0 <= error.position <= len(text)
    assert error.message


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_clean_error(text: str) -> None:
    parses_or_fails_cleanly(text)


@given(st.text(alphabet="()aAnNdDoOrRtT \t", max_size=200))
def test_operator_and_parenthesis_soup_parses_or_is_a_clean_error(text: str) -> None:
    parses_or_fails_cleanly(text)
