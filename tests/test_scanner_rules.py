"""The ready rules for other scanners (``contrib/gitleaks.toml``, ``contrib/trufflehog.yaml``):
their regular expression matches generated keys wherever ``keyplane scan`` finds them and
rejects the near-misses a regular expression can reject (the checksum it cannot check).

Both tools use Go's RE2, whose ``\\b`` is ASCII-only: the regex is compiled here with
``re.ASCII``, and kept to what RE2 and Python share (no lookaround, no backreferences).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyplane.kit import scanner
from keyplane.kit.keys import generate_api_key

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"

CONTEXTS = [
    "{key}",
    'api_key = "{key}"',
    "KEYPLANE_API_KEY={key}\n",
    '{{"apiKey": "{key}"}}',
    "https://app.example.com/cb?key={key}&next=/",
    "https://app.example.com/login?next=%2Fcb%3Fkey%3D{key}",
    '{{"msg": "created:\\n{key}"}}',
    "Authorization: Bearer {key}\r\n",
]


def gitleaks_rule() -> dict[str, Any]:
    config = tomllib.loads((CONTRIB / "gitleaks.toml").read_text())
    (rule,) = config["rules"]
    assert config["extend"] == {"useDefault": True}
    return dict(rule)


def trufflehog_detector() -> dict[str, Any]:
    config = yaml.safe_load((CONTRIB / "trufflehog.yaml").read_text())
    (detector,) = config["detectors"]
    return dict(detector)


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def rules() -> list[tuple[str, re.Pattern[str], int, float]]:
    """(name, compiled regex, the group that is the key, entropy threshold) per tool."""
    rule = gitleaks_rule()
    detector = trufflehog_detector()
    ((_, truffle_regex),) = detector["regex"].items()
    return [
        ("gitleaks", re.compile(rule["regex"], re.ASCII), rule["secretGroup"], rule["entropy"]),
        ("trufflehog", re.compile(truffle_regex, re.ASCII), 1, detector["entropy"]),
    ]


def test_the_rules_say_what_the_tools_need() -> None:
    rule = gitleaks_rule()
    assert rule["id"] == "keyplane-api-key"
    assert rule["description"]
    assert rule["keywords"] == ["kp_"]
    detector = trufflehog_detector()
    assert detector["name"] == "KeyplaneApiKey"
    assert detector["keywords"] == ["kp_"]
    # The same regex in both, and only syntax RE2 knows.
    assert rule["regex"] == next(iter(detector["regex"].values()))
    for construct in ("(?=", "(?!", "(?<=", "(?<!", "\\1", "(?P="):
        assert construct not in rule["regex"]


@pytest.mark.parametrize(("name", "pattern", "group", "threshold"), rules())
def test_the_rule_matches_generated_keys_where_the_scanner_finds_them(
    name: str, pattern: re.Pattern[str], group: int, threshold: float
) -> None:
    for index in range(1000):
        key = generate_api_key()
        text = CONTEXTS[index % len(CONTEXTS)].format(key=key)
        matches = [match.group(group) for match in pattern.finditer(text)]
        assert matches == [key], (name, text)
        assert [finding.value for finding in scanner.scan_text(text)] == [key]
        assert entropy(key) > threshold + 0.5


@pytest.mark.parametrize(("name", "pattern", "group", "threshold"), rules())
def test_the_rule_rejects_near_misses_but_cannot_check_the_checksum(
    name: str, pattern: re.Pattern[str], group: int, threshold: float
) -> None:
    for _ in range(200):
        key = generate_api_key()
        cut = len(key) // 2
        misses = [
            "KP_" + key[3:],  # wrong prefix
            "kp-" + key[3:],
            "xkp_" + key[3:],  # glued to a word
            "_" + key,
            key[:-1],  # short
            key + "Z",  # long
            key + "_",
            key[:cut] + "-" + key[cut + 1 :],  # a character outside base62
            key[:cut] + "é" + key[cut + 1 :],
        ]
        for miss in misses:
            for context in ('"{key}"', "{key}\n", "x={key}"):
                text = context.format(key=miss)
                assert not pattern.search(text), (name, text)
                assert scanner.scan_text(text) == []
        # A wrong checksum: the regex matches (it cannot compute CRC32), the scanner does not.
        wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
        assert pattern.fullmatch(wrong)
        assert scanner.scan_text(wrong) == []
    # Placeholders in documentation fall under the entropy threshold.
    placeholder = "kp_" + "x" * 38
    assert pattern.fullmatch(placeholder)
    assert entropy(placeholder) < threshold


def test_the_format_regex_is_the_rules_without_the_escapes() -> None:
    pattern = re.compile(scanner.KEY_PATTERN, re.ASCII)
    key = generate_api_key()
    assert [m.group() for m in pattern.finditer(f"a={key} b='{key}'")] == [key, key]
    assert not pattern.search(f"%3D{key}")
    assert [f.value for f in scanner.scan_text(f"%3D{key}")] == [key]
