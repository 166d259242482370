"""The key scanner: real keys are found where they are, in every shape a leak takes, and
nothing else is ever reported (random text, binary data, near-misses of every kind), however
the input is cut into chunks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from keyplane.kit import scanner
from keyplane.kit.keys import (
    API_KEY_LENGTH,
    API_KEY_PREFIX,
    BASE62_ALPHABET,
    RANDOM_LENGTH,
    checksum,
    generate_api_key,
    generate_session_token,
)

random_parts = st.text(alphabet=BASE62_ALPHABET, min_size=RANDOM_LENGTH, max_size=RANDOM_LENGTH)
keys = random_parts.map(lambda part: API_KEY_PREFIX + part + checksum(API_KEY_PREFIX + part))
# Text rich in what a scanner trips over: the prefix, its letters, base62 and line breaks.
tricky_text = st.lists(
    st.one_of(
        st.sampled_from(["kp_", "k", "p", "_", "\n", "\\n", "%3D", " ", '"', "=", "é", "€"]),
        st.sampled_from(BASE62_ALPHABET),
        st.characters(codec="utf-8"),
    ),
    max_size=150,
).map("".join)
# What may stand right before a key and still leave it a key.
left_boundaries = st.sampled_from(
    ["", " ", "\n", "\t", '"', "'", "=", ":", "/", "?", "&", "(", ",", "-", ".", "\\n", "%3D"]
)
right_boundaries = st.sampled_from(["", " ", "\n", "\r\n", '"', "'", "&", ")", ",", ";", "-", "."])


def where(text: str, index: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``text[index]``."""
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def found(text: str) -> list[tuple[int, int, str]]:
    return [(f.line, f.column, f.value) for f in scanner.scan_text(text)]


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- where keys leak ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{key}",
        'api_key = "{key}"',
        "api_key = '{key}'",
        "KEYPLANE_API_KEY={key}",
        "export KEYPLANE_API_KEY={key}\n",
        '{{"apiKey": "{key}", "uid": "x"}}',
        "curl -H 'ApiKey: {key}' https://keys.example.com/v1/users/info",
        "https://app.example.com/cb?key={key}&next=/",
        "https://app.example.com/login?next=%2Fcb%3Fkey%3D{key}",
        '{{"msg": "created:\\n{key}\\nbye"}}',
        "Authorization: Bearer {key}\r\n",
        "key: {key}  # yaml",
        "<apiKey>{key}</apiKey>",
        "(`{key}`)",
        "- {key}.",
    ],
)
def test_a_key_is_found_in_every_shape_a_leak_takes(template: str) -> None:
    key = generate_api_key()
    text = template.format(key=key)
    line, column = where(text, text.index(key))
    assert found(text) == [(line, column, key)]


def test_lines_and_columns_count_characters_from_one() -> None:
    first, second, third = generate_api_key(), generate_api_key(), generate_api_key()
    text = f"{first}\n\nnaïve € = '{second}' {third}\n"
    assert found(text) == [(1, 1, first), (3, 12, second), (3, 55, third)]


def test_keys_one_separator_apart_are_all_found() -> None:
    values = [generate_api_key() for _ in range(5)]
    assert [value for *_, value in found(",".join(values))] == values
    assert [value for *_, value in found(" ".join(values))] == values


def test_a_finding_shows_the_hint_only() -> None:
    key = generate_api_key()
    (finding,) = scanner.scan_text(f"x = {key}", path="settings.py")
    assert finding.hint == f"kp_…{key[-4:]}"
    assert finding.key_hint == key[-4:]
    assert key not in repr(finding)
    assert key not in str(finding)
    assert repr(finding) == "Finding(path='settings.py', line=1, column=5)"


def test_redact_replaces_every_key_with_its_hint() -> None:
    key = generate_api_key()
    assert scanner.redact(f"refused {key}.") == f"refused kp_…{key[-4:]}."
    assert scanner.redact("nothing") == "nothing"


def test_binary_data_is_scanned_too() -> None:
    key = generate_api_key()
    data = bytes(range(256)) * 10 + b"\x00" + key.encode() + b"\x00\xff\xfe" + bytes(100)
    (finding,) = scanner.scan_bytes(data)
    assert finding.value == key


# --- what is never reported --------------------------------------------------------------


def near_misses(key: str) -> list[str]:
    body, check = key[:-6], key[-6:]
    wrong = check[:-1] + ("0" if check[-1] != "0" else "1")
    cut = len(key) // 2
    return [
        body + wrong,  # wrong checksum
        key[:-1],  # one character short
        key + "a",  # one character long
        key + "_v2",  # continued by a word
        "x" + key,  # glued to a word before it
        "_" + key,
        "my" + key,
        "0" + key,
        "\\" + key[:-1] + "_",
        key[:cut] + "-" + key[cut + 1 :],  # a character outside base62
        key[:cut] + "é" + key[cut + 1 :],
        "KP_" + key[3:],  # the prefix in another case
        "kp-" + key[3:],
        key[:3] + key[3:].swapcase(),
        "%3" + key,  # not a whole percent-escape
        "%G0" + key,
    ]


@given(keys)
def test_near_misses_are_never_reported(key: str) -> None:
    for miss in near_misses(key):
        assert found(miss) == [], miss
        assert found(f'token = "{miss}"\n') == [], miss


def test_session_tokens_are_not_api_keys() -> None:
    assert found(generate_session_token()) == []


@given(tricky_text)
def test_random_text_has_no_keys(text: str) -> None:
    assert found(text) == []


@given(st.binary(max_size=2000))
def test_random_bytes_have_no_keys(data: bytes) -> None:
    assert scanner.scan_bytes(data) == []


def test_the_format_regex_matches_what_the_scanner_finds_and_more() -> None:
    pattern = re.compile(scanner.KEY_PATTERN, re.ASCII)
    key = generate_api_key()
    assert pattern.fullmatch(key)
    for miss in near_misses(key)[1:4]:
        assert not pattern.search(miss), miss
    # A regular expression cannot check the checksum: that near-miss it still matches.
    assert pattern.fullmatch(near_misses(key)[0])


# --- properties: found where it is --------------------------------------------------------


@given(tricky_text, left_boundaries, keys, right_boundaries, tricky_text)
def test_a_key_in_random_text_is_found_at_its_line_and_column(
    before: str, left: str, key: str, right: str, after: str
) -> None:
    # The key must start and end a token, as the boundary rules say.
    assume(bool(left) or not re.search(r"[0-9A-Za-z_]$", before))
    assume(not re.match(r"[0-9A-Za-z_]", right + after))
    text = before + left + key + right + after
    line, column = where(text, len(before) + len(left))
    assert found(text) == [(line, column, key)]


@given(tricky_text, keys, tricky_text, st.integers(min_value=1, max_value=120))
def test_chunk_boundaries_change_nothing(
    before: str, key: str, after: str, chunk_size: int
) -> None:
    text = f"{before}\n{key}\n{after}"
    data = text.encode()
    whole = scanner.scan_bytes(data)
    assert [f.value for f in whole] == [key]
    assert list(scanner.scan_chunks(in_chunks(data, chunk_size))) == whole


def test_a_key_across_every_chunk_boundary_is_found_once() -> None:
    key = generate_api_key()
    text = "€ x=" + "\n".join(["line"] * 3) + f' "{key}" ' + "é" * 50
    data = text.encode()
    expected = scanner.scan_bytes(data)
    assert [f.value for f in expected] == [key]
    for size in range(1, len(data) + 1):
        assert list(scanner.scan_chunks(in_chunks(data, size))) == expected, size
    # Empty chunks on the way change nothing either.
    assert list(scanner.scan_chunks([b"", *in_chunks(data, 7), b""])) == expected


def test_a_large_file_is_read_in_chunks_with_lines_and_columns_right(tmp_path: Path) -> None:
    values = [generate_api_key() for _ in range(4)]
    lines = []
    for index in range(40_000):
        lines.append(f"line {index} kp_notakey " + "é" * (index % 7))
    lines[17] += " " + values[0]
    lines[20_000] = values[1]
    # One very long line that spans several chunks, with a key at its end.
    lines[30_000] = "€" * 100_000 + " " + values[2]
    lines[-1] += " " + values[3]
    text = "\n".join(lines)
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    expected = []
    for value in values:
        index = text.index(value)
        expected.append((str(path), *where(text, index), value))
    for chunk_size in (4096, 65_537, scanner.CHUNK_SIZE):
        findings = scanner.scan_file(path, chunk_size=chunk_size)
        assert [(f.path, f.line, f.column, f.value) for f in findings] == expected


# --- walking folders --------------------------------------------------------------------


def test_walk_skips_git_and_symbolic_links(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("z")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "config").write_text("x")
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yml").write_text("y")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    os.symlink(outside, tmp_path / "linked-dir")
    os.symlink(outside / "secret.txt", tmp_path / "linked-file")
    os.symlink(tmp_path, tmp_path / "b" / "loop")
    os.mkfifo(tmp_path / "fifo")
    files = [path.relative_to(tmp_path).as_posix() for path in scanner.walk(tmp_path)]
    assert files == [".github/ci.yml", "a.txt", "b/z.txt"]


def test_walk_reports_folders_it_cannot_list(tmp_path: Path) -> None:
    errors: list[tuple[Path, type[OSError]]] = []
    missing = tmp_path / "missing"
    assert (
        list(scanner.walk(missing, on_error=lambda path, exc: errors.append((path, type(exc)))))
        == []
    )
    assert errors == [(missing, FileNotFoundError)]


def test_key_length_is_what_the_scanner_assumes() -> None:
    assert API_KEY_LENGTH == 41
    assert len(generate_api_key()) == API_KEY_LENGTH
