from __future__ import annotations

import math

import pytest

from keyplane.kit.keys import (
    API_KEY_LENGTH,
    API_KEY_PREFIX,
    BASE62_ALPHABET,
    CHECKSUM_LENGTH,
    HINT_LENGTH,
    RANDOM_LENGTH,
    SecretHasher,
    checksum,
    encode_base62,
    generate_api_key,
    generate_session_token,
    hint_display,
    is_well_formed_api_key,
    is_well_formed_session_token,
    key_hint,
)


def test_generated_key_has_prefix_length_and_alphabet() -> None:
    key = generate_api_key()
    assert key.startswith(API_KEY_PREFIX)
    assert len(key) == API_KEY_LENGTH
    assert set(key[len(API_KEY_PREFIX) :]) <= set(BASE62_ALPHABET)
    assert is_well_formed_api_key(key)


def test_key_carries_at_least_160_bits_of_entropy() -> None:
    assert RANDOM_LENGTH * math.log2(62) >= 160


def test_generated_keys_differ() -> None:
    assert len({generate_api_key() for _ in range(1000)}) == 1000


def test_checksum_is_the_last_characters() -> None:
    key = generate_api_key()
    assert key[-CHECKSUM_LENGTH:] == checksum(key[:-CHECKSUM_LENGTH])


@pytest.mark.parametrize("position", [3, 10, 20, 34, 36, 40])
def test_any_single_character_change_is_rejected(position: int) -> None:
    key = generate_api_key()
    replacement = "A" if key[position] != "A" else "B"
    mistyped = key[:position] + replacement + key[position + 1 :]
    assert not is_well_formed_api_key(mistyped)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "kp_",
        "kp_short",
        "xx_" + "a" * (API_KEY_LENGTH - 3),
        "kp_" + "-" * (API_KEY_LENGTH - 3),
        "kp_" + "é" * (API_KEY_LENGTH - 3),
    ],
)
def test_malformed_values_are_rejected(value: str) -> None:
    assert not is_well_formed_api_key(value)


def test_truncated_and_extended_keys_are_rejected() -> None:
    key = generate_api_key()
    assert not is_well_formed_api_key(key[:-1])
    assert not is_well_formed_api_key(key + "a")


def test_session_tokens_and_keys_are_not_interchangeable() -> None:
    token = generate_session_token()
    assert is_well_formed_session_token(token)
    assert not is_well_formed_api_key(token)
    assert not is_well_formed_session_token(generate_api_key())


def test_hash_is_keyed_and_matches_in_constant_time() -> None:
    key = generate_api_key()
    one, other = SecretHasher(b"a" * 32), SecretHasher(b"b" * 32)
    assert one.hash(key) != other.hash(key)
    assert key not in one.hash(key)
    assert one.matches(key, one.hash(key))
    assert not one.matches(key, other.hash(key))


def test_base62_is_fixed_width() -> None:
    assert encode_base62(0, 6) == "000000"
    assert encode_base62(61, 2) == "0z"
    with pytest.raises(ValueError, match="fit"):
        encode_base62(62**2, 2)


def test_the_hint_is_four_checksum_characters_and_none_of_the_random_ones() -> None:
    key = generate_api_key()
    hint = key_hint(key)
    assert HINT_LENGTH == 4
    assert hint == key[-4:]
    # Within the checksum, which is computed from the rest of the key.
    assert HINT_LENGTH <= CHECKSUM_LENGTH
    assert checksum(key[:-CHECKSUM_LENGTH]).endswith(hint)
    assert hint_display(hint) == f"kp_…{hint}"
    assert hint_display(None) == "—"
