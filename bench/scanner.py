"""Benchmark: how fast ``keyplane scan`` finds keys, in MB/s on one core (goal: >= 100 MB/s).

Writes a large file of source-like text (Python, JavaScript, JSON, env files, log lines,
URLs) with a few real keys and many ``kp_`` near-misses (a wrong checksum, one character
short or long, glued to a word before or after), then, pinned to one CPU:

- ``keyplane.kit.scanner.scan_file`` over the file (in the page cache), and
  ``scan_bytes`` over the same bytes in memory;
- ``keyplane scan FILE`` as a command, start-up included;
- baselines in the same run: a bare ``bytes.count(b"kp_")`` pass (the floor of any
  prefix-driven scanner in Python), ``grep -c kp_`` over the file, and Python's ``re`` with
  the key format's regular expression (``finditer``, no checksum).

It checks that exactly the planted keys were found (and none of the near-misses), then
prints a Markdown table. No key value is printed.

    .venv/bin/python bench/scanner.py                 # 300 MB, ~1 min
    .venv/bin/python bench/scanner.py --megabytes 30  # a quick check
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import goal, log, machine_summary, table

from keyplane.kit import scanner
from keyplane.kit.keys import API_KEY_PREFIX, BASE62_ALPHABET, checksum, generate_api_key

MB = 1_000_000
GOAL_MB_PER_S = 100
_IDENTIFIER = string.ascii_lowercase + "_"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=300, help="size of the input, in MB")
    parser.add_argument("--keys", type=int, default=20, help="real keys planted in it")
    parser.add_argument(
        "--near-misses-per-mb", type=int, default=500, help="kp_ near-misses per MB"
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement")
    parser.add_argument("--seed", type=int, default=13)
    return parser.parse_args()


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(_IDENTIFIER, k=rng.randint(3, 12)))


def _base62(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(BASE62_ALPHABET, k=length))


def _line(rng: random.Random) -> str:
    a, b, c = _word(rng), _word(rng), _word(rng)
    number = rng.randint(0, 100_000)
    templates = (
        f"    {a} = {b}.{c}({number}, name={b!r})",
        f"def {a}_{b}(self, {c}: int = {number}) -> str:",
        f"        return self.{a}[{number}] + '{c}'",
        f"  const {a} = await fetch(`/api/{b}/${{{c}}}`, {{ method: 'POST' }});",
        f'  "{a}": {{"{b}": {number}, "{c}": "{_base62(rng, 24)}"}},',
        f"{a.upper()}_{b.upper()}={_base62(rng, rng.randint(8, 40))}",
        f"2026-12-05T10:{number % 60:02d}:00Z INFO {a}.{b} request_id={_base62(rng, 16)} ok",
        f"# {a} {b} {c}: see https://example.com/{a}/{b}?page={number}&sort={c}",
        "",
        f"    # TODO({a}): {b} the {c} before {number}",
    )
    return rng.choice(templates)


def _near_miss(rng: random.Random) -> str:
    """Something that starts like a key and is not one."""
    body = API_KEY_PREFIX + _base62(rng, 32)
    good = body + checksum(body)
    kind = rng.randrange(6)
    if kind == 0:  # wrong checksum
        wrong = checksum(body)
        while wrong == checksum(body):
            wrong = _base62(rng, 6)
        return body + wrong
    if kind == 1:  # one character short
        return good[:-1]
    if kind == 2:  # one character long
        return good + rng.choice(BASE62_ALPHABET)
    if kind == 3:  # glued to a word before it
        return _word(rng) + good
    if kind == 4:  # a character outside base62 inside it
        cut = rng.randint(4, 39)
        return good[:cut] + "-" + good[cut + 1 :]
    return f"kp_{_word(rng)}"  # an identifier that merely starts with kp_


def _generate(path: Path, size: int, keys: int, near_misses_per_mb: int, seed: int) -> set[str]:
    """Writes about ``size`` bytes; returns the planted keys (held in memory only)."""
    rng = random.Random(seed)  # noqa: S311 (filler text, reproducible; keys come from secrets)
    # One block of ~8 MB written over and over, each time with other keys and near-misses
    # placed in it: writing 300 MB line by line in Python would take longer than scanning.
    block_lines = []
    block_size = 0
    while block_size < 8 * MB:
        line = _line(rng)
        block_lines.append(line)
        block_size += len(line) + 1
    planted: set[str] = set()
    blocks = max(1, size // block_size)
    key_blocks = {rng.randrange(blocks) for _ in range(keys)}
    while len(key_blocks) < min(keys, blocks):
        key_blocks.add(rng.randrange(blocks))
    keys_per_block = {block: 0 for block in key_blocks}
    for index in range(keys):
        keys_per_block[sorted(key_blocks)[index % len(key_blocks)]] += 1
    near_misses = near_misses_per_mb * block_size // MB
    with path.open("w", encoding="utf-8") as output:
        for block in range(blocks):
            lines = list(block_lines)
            for _ in range(near_misses):
                at = rng.randrange(len(lines))
                lines[at] = f'{lines[at]} token = "{_near_miss(rng)}"'
            for _ in range(keys_per_block.get(block, 0)):
                key = generate_api_key()
                planted.add(key)
                at = rng.randrange(len(lines))
                lines[at] = rng.choice(
                    (
                        f"KEYPLANE_API_KEY={key}",
                        f'    client = Client(api_key="{key}")',
                        f"curl -H 'ApiKey: {key}' https://keys.example.com/v1/users/info",
                        f'{{"apiKey": "{key}", "uid": "{_base62(rng, 24)}"}}',
                    )
                )
            output.write("\n".join(lines))
            output.write("\n")
    return planted


def _best(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The shortest of ``repeats`` runs, in seconds, and the last result."""
    best = float("inf")
    result: object = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def _command(arguments: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(arguments, capture_output=True, check=False)  # noqa: S603


def main() -> None:
    arguments = _arguments()
    if hasattr(os, "sched_setaffinity"):
        # One core: the scan is single-threaded; this keeps the baselines on the same terms.
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"Machine: {machine_summary()}\n")
    with tempfile.TemporaryDirectory(prefix="keyplane-scan-bench-") as directory:
        path = Path(directory) / "input.txt"
        log(f"writing about {arguments.megabytes} MB of source-like text to {path}")
        planted = _generate(
            path,
            arguments.megabytes * MB,
            arguments.keys,
            arguments.near_misses_per_mb,
            arguments.seed,
        )
        data = path.read_bytes()
        size = len(data)
        candidates = data.count(b"kp_")
        log(f"{size / MB:.0f} MB, {len(planted)} keys, {candidates - len(planted)} near-misses")

        rows: list[list[str]] = []

        def measure(name: str, seconds: float) -> float:
            rate = size / MB / seconds
            rows.append([name, f"{seconds:.3f}", f"{rate:,.0f}"])
            return rate

        log("scan_file (page cache warm)")
        seconds, found = _best(lambda: scanner.scan_file(path), arguments.repeats)
        assert isinstance(found, list)
        values = {finding.value for finding in found}
        if values != planted or len(found) != len(planted):
            sys.exit(f"scan_file found {len(found)} keys, not the {len(planted)} planted")
        file_rate = measure("scan_file(path)", seconds)

        log("scan_bytes (in memory)")
        seconds, found = _best(lambda: scanner.scan_bytes(data), arguments.repeats)
        assert isinstance(found, list)
        if {finding.value for finding in found} != planted:
            sys.exit("scan_bytes did not find exactly the planted keys")
        measure("scan_bytes(data)", seconds)

        keyplane = Path(sys.executable).with_name("keyplane")
        if keyplane.exists():
            log("keyplane scan FILE")
            seconds, result = _best(
                lambda: _command([str(keyplane), "scan", str(path)]), arguments.repeats
            )
            assert isinstance(result, subprocess.CompletedProcess)
            if result.returncode != 1 or any(key.encode() in result.stdout for key in planted):
                sys.exit(f"keyplane scan exited {result.returncode}, or printed a key")
            measure("`keyplane scan FILE` (with start-up)", seconds)

        log("baselines")
        seconds, _ = _best(lambda: data.count(b"kp_"), arguments.repeats)
        floor_rate = measure('baseline: data.count(b"kp_")', seconds)
        grep = shutil.which("grep")
        if grep:
            seconds, _ = _best(lambda: _command([grep, "-c", "kp_", str(path)]), arguments.repeats)
            measure("baseline: grep -c kp_ FILE", seconds)
        pattern = re.compile(scanner.KEY_PATTERN.encode())
        seconds, _ = _best(lambda: sum(1 for _ in pattern.finditer(data)), arguments.repeats)
        measure("baseline: re.finditer(KEY_PATTERN), no checksum", seconds)

    print(
        f"Input: {size / MB:.0f} MB of source-like text, {len(planted)} keys, "
        f"{candidates - len(planted):,} near-misses (kp_ that is not a key); one CPU; "
        f"best of {arguments.repeats}.\n"
    )
    print(table(["scan", "seconds", "MB/s"], rows))
    print()
    print(
        table(
            ["goal", "measured", "target", "met"],
            [
                [
                    "scan_file MB/s on one core",
                    f"{file_rate:,.0f}",
                    f">= {GOAL_MB_PER_S}",
                    goal(file_rate >= GOAL_MB_PER_S),
                ],
                ["scan_file / bare count(b'kp_')", f"{file_rate / floor_rate:.0%}", "-", "-"],
            ],
        )
    )


if __name__ == "__main__":
    main()
