"""Finding Keyplane API keys in text and files: by prefix, length, alphabet and checksum.

What counts as a key (the same rules as ``keyplane.kit.keys``, plus boundaries):

- ``kp_``, then exactly 38 base62 characters whose last 6 are the CRC32 checksum of
  everything before them. The checksum is what keeps random text and near-misses out: a
  run of the right shape passes it by chance once in 62**6 (about 5.7e10) tries, so a
  candidate is checked on its own and the scanner can afford to be generous elsewhere.
- **After** the key: the end of the input or a character that is not a word character
  (``[0-9A-Za-z_]``). A longer run (``kp_`` + 39 base62 characters) is some other token,
  not a key with something glued on, since Keyplane refuses it.
- **Before** ``kp_``: the start of the input or a character that is not a word character
  (quotes, ``=``, ``:``, spaces, ``/``, ``?``, ``&``, ``-``, ``.``, a line break...), so
  ``xkp_...`` or ``my_kp_...`` is not a key. Two exceptions, because they are how keys
  really leak in logs and URLs: a string escape of a line break or tab written out as two
  characters (``\\n``, ``\\r``, ``\\t``, as in JSON log lines: ``"...\\nkp_..."``) and a
  percent-encoded byte (``%3D``, ``%22``, ``%20``..., as in a URL inside a query string:
  ``?next=%2Fcb%3Fkey%3Dkp_...``).

The regular expression of the format, for other tools (they cannot check the checksum, so
they report more near-misses than this module): :data:`KEY_PATTERN`; the ready rules for
gitleaks and TruffleHog in ``contrib/`` add the two exceptions above.

Every input is scanned as bytes, binary files included: keys leak into ``.pyc`` files,
SQLite databases and build artefacts too, and the checksum keeps binary noise out. Text in
UTF-16 or compressed, base64-encoded or otherwise encoded data is not decoded.

Speed: ``bytes.find(b"kp_")`` (C, memchr-like) runs over the input and only the few
candidates it stops at are checked in Python; line numbers are counted with
``bytes.count(b"\\n")`` over what was scanned. Large inputs are read in chunks
(:data:`CHUNK_SIZE`) that overlap by a key's length, so memory stays flat and a key that
straddles two chunks is found once.

Lines and columns are 1-based; the column counts characters (UTF-8 decoded; a byte that is
not valid UTF-8 counts as one character), as editors and Python's own tools do.

A :class:`Finding` carries the whole key only so that it can be reported to a leak endpoint;
its ``repr`` and :attr:`Finding.hint` show ``kp_…`` and the last 4 characters, never more.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from keyplane.kit.keys import (
    API_KEY_LENGTH,
    API_KEY_PREFIX,
    CHECKSUM_LENGTH,
    checksum,
    hint_display,
    key_hint,
)

# The key format as a regular expression: ASCII word boundaries on both sides (RE2's ``\b``,
# Python's with ``re.ASCII``). Regular expressions cannot check the checksum.
KEY_PATTERN = r"\bkp_[0-9A-Za-z]{38}\b"

CHUNK_SIZE = 4 * 1024 * 1024

_PREFIX = API_KEY_PREFIX.encode("ascii")
_PREFIX_LENGTH = len(_PREFIX)
_BODY_LENGTH = API_KEY_LENGTH - CHECKSUM_LENGTH
_WORD = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_ESCAPED = frozenset(b"nrt")
_BACKSLASH = ord("\\")
_PERCENT = ord("%")
# Bytes a candidate needs before it (``%3D``) and, besides itself, after it (the boundary).
_LEFT_CONTEXT = 3
_NEEDED = API_KEY_LENGTH + 1
# UTF-8 continuation bytes: they do not start a character.
_CONTINUATION = bytes(range(0x80, 0xC0))


@dataclass(frozen=True, slots=True)
class Finding:
    """A well-formed key at a 1-based line and column (in characters) of ``path``."""

    path: str
    line: int
    column: int
    # The whole key, for a leak report only: never printed, never in the repr.
    value: str = field(repr=False)

    @property
    def key_hint(self) -> str:
        """The key's last 4 characters, as Keyplane keeps them (``keyHint`` in the API)."""
        return key_hint(self.value)

    @property
    def hint(self) -> str:
        """How the key is shown: ``kp_…abcd``."""
        return hint_display(self.key_hint)


def _characters(data: bytes) -> int:
    if data.isascii():
        return len(data)
    return len(data.translate(None, _CONTINUATION))


def _starts_a_key(buffer: bytes, position: int) -> bool:
    """The left boundary of a ``kp_`` at ``position`` (see the module docstring)."""
    if position == 0:
        # Only at the start of the stream: later chunks keep bytes before every candidate.
        return True
    before = buffer[position - 1]
    if before not in _WORD:
        return True
    if position >= 2 and buffer[position - 2] == _BACKSLASH and before in _ESCAPED:
        return True
    return (
        position >= 3
        and buffer[position - 3] == _PERCENT
        and buffer[position - 2] in _HEX
        and before in _HEX
    )


def _key_at(buffer: bytes, position: int) -> str | None:
    """The key starting at ``position`` (where ``kp_`` is), or None for a near-miss."""
    end = position + API_KEY_LENGTH
    rest = buffer[position + _PREFIX_LENGTH : end]
    # bytes.isalnum() is ASCII-only: exactly base62.
    if len(rest) != API_KEY_LENGTH - _PREFIX_LENGTH or not rest.isalnum():
        return None
    if end < len(buffer) and buffer[end] in _WORD:
        return None
    if not _starts_a_key(buffer, position):
        return None
    value = buffer[position:end].decode("ascii")
    if checksum(value[:_BODY_LENGTH]) != value[_BODY_LENGTH:]:
        return None
    return value


def scan_chunks(chunks: Iterable[bytes], path: str = "-") -> Iterator[Finding]:
    """The keys in a stream given as consecutive chunks of bytes, in order.

    Chunks may be of any size and cut anywhere; a key that straddles two is found once.
    """
    buffer = b""
    base = 0  # stream offset of buffer[0]
    start = 0  # where in buffer to look for the next candidate
    # Line accounting up to stream offset `counted`: the line it is on, and the number of
    # characters between that line's start and `counted`.
    counted = 0
    line = 1
    line_characters = 0

    def advance(to: int) -> None:
        nonlocal counted, line, line_characters
        begin, end = counted - base, to - base
        newlines = buffer.count(b"\n", begin, end)
        if newlines:
            line += newlines
            line_characters = _characters(buffer[buffer.rfind(b"\n", begin, end) + 1 : end])
        else:
            line_characters += _characters(buffer[begin:end])
        counted = to

    iterator = iter(chunks)
    while True:
        chunk = next(iterator, None)
        at_end = chunk is None
        if chunk:
            buffer = buffer + chunk if buffer else chunk
        elif not at_end:
            continue
        # Candidates before `limit` have all the bytes they need; later ones wait for the
        # next chunk (unless there is none).
        limit = len(buffer) if at_end else max(len(buffer) - _NEEDED + 1, start)
        position = buffer.find(_PREFIX, start, limit + _PREFIX_LENGTH - 1)
        while position != -1 and position < limit:
            value = _key_at(buffer, position)
            if value is None:
                position = buffer.find(
                    _PREFIX, position + _PREFIX_LENGTH, limit + _PREFIX_LENGTH - 1
                )
                continue
            advance(base + position)
            yield Finding(path, line, line_characters + 1, value)
            position = buffer.find(_PREFIX, position + API_KEY_LENGTH, limit + _PREFIX_LENGTH - 1)
        if at_end:
            return
        # Keep what the next candidates need: from `limit`, with the bytes before it that a
        # left boundary looks at. Lines are counted over what is dropped.
        keep_from = max(limit - _LEFT_CONTEXT, 0)
        if counted < base + keep_from:
            advance(base + keep_from)
        buffer = buffer[keep_from:]
        base += keep_from
        start = limit - keep_from


def scan_bytes(data: bytes, path: str = "-") -> list[Finding]:
    return list(scan_chunks((data,), path))


def scan_text(text: str, path: str = "-") -> list[Finding]:
    return scan_bytes(text.encode("utf-8", "surrogatepass"), path)


def read_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


def scan_stream(
    stream: BinaryIO, path: str = "-", chunk_size: int = CHUNK_SIZE
) -> Iterator[Finding]:
    return scan_chunks(read_chunks(stream, chunk_size), path)


def scan_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> list[Finding]:
    """The keys in one file, read in chunks. Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as stream:
        return list(scan_stream(stream, os.fspath(path), chunk_size))


def redact(text: str) -> str:
    """``text`` with every key in it replaced by its hint (``kp_…abcd``)."""
    findings = scan_text(text)
    if not findings:
        return text
    for finding in findings:
        text = text.replace(finding.value, finding.hint)
    return text


def walk(root: Path, on_error: Callable[[Path, OSError], None] | None = None) -> Iterator[Path]:
    """The regular files under a directory, in sorted order.

    Skips ``.git`` directories and every symbolic link (to a file or a directory), as
    ``grep -r`` does: a link may lead out of the tree, into a loop, or to a device that
    never ends. Nothing else is skipped (no ``.gitignore``): a key in an ignored ``.env`` is
    still worth knowing about. Directories that cannot be listed go to ``on_error``.
    """
    try:
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        if on_error is not None:
            on_error(root, exc)
        return
    for entry in entries:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:
            if on_error is not None:
                on_error(Path(entry.path), exc)
            continue
        if stat.S_ISDIR(mode):
            if entry.name != ".git":
                yield from walk(Path(entry.path), on_error)
        elif stat.S_ISREG(mode):
            yield Path(entry.path)
