"""Properties of the key format: what generation makes is always accepted, and a key
altered in any small way (the typos and truncations people make) is refused by the format
and checksum alone, before anything is hashed or looked up."""

from __future__ import annotations

import hmac
from typing import Any, cast

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from keyplane.auth.service import authenticate_api_key
from keyplane.kit.errors import Unauthorized
from keyplane.kit.keys import (
    API_KEY_LENGTH,
    API_KEY_PREFIX,
    BASE62_ALPHABET,
    CHECKSUM_LENGTH,
    RANDOM_LENGTH,
    SESSION_TOKEN_PREFIX,
    SecretHasher,
    checksum,
    encode_base62,
    generate_api_key,
    generate_session_token,
    is_well_formed_api_key,
    is_well_formed_session_token,
)
from keyplane.runtime import Runtime

base62 = st.sampled_from(BASE62_ALPHABET)
random_parts = st.text(alphabet=BASE62_ALPHABET, min_size=RANDOM_LENGTH, max_size=RANDOM_LENGTH)
# Keys as generation makes them, with randomness Hypothesis chooses (and can shrink).
keys = random_parts.map(lambda part: API_KEY_PREFIX + part + checksum(API_KEY_PREFIX + part))
# Anything a person or a program might paste: any character at all.
any_character = st.characters(codec=None)


def decode_base62(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + BASE62_ALPHABET.index(char)
    return number


@given(st.data())
def test_generated_keys_and_tokens_are_well_formed(data: st.DataObject) -> None:
    # generate_api_key draws from `secrets`, which Hypothesis cannot steer: many draws.
    key = generate_api_key()
    token = generate_session_token()
    assert len(key) == API_KEY_LENGTH
    assert key.startswith(API_KEY_PREFIX)
    assert set(key[len(API_KEY_PREFIX) :]) <= set(BASE62_ALPHABET)
    assert is_well_formed_api_key(key)
    assert is_well_formed_session_token(token)
    assert not is_well_formed_session_token(key)
    assert not is_well_formed_api_key(token)
    # A key from Hypothesis's randomness is accepted just the same.
    assert is_well_formed_api_key(data.draw(keys))


@given(keys)
def test_a_key_is_its_body_and_the_checksum_of_it(key: str) -> None:
    body, check = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    assert checksum(body) == check
    assert key == API_KEY_PREFIX + key[len(API_KEY_PREFIX) : -CHECKSUM_LENGTH] + check


@given(keys, st.data())
def test_any_single_character_change_is_refused(key: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(key) - 1), label="position")
    replacement = data.draw(base62 | any_character, label="replacement")
    assume(replacement != key[position])
    changed = key[:position] + replacement + key[position + 1 :]
    assert not is_well_formed_api_key(changed)


@given(keys, st.data())
def test_two_neighbours_swapped_are_refused(key: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(key) - 2), label="position")
    assume(key[position] != key[position + 1])
    swapped = key[:position] + key[position + 1] + key[position] + key[position + 2 :]
    assert not is_well_formed_api_key(swapped)


@given(keys, st.data())
def test_truncated_keys_are_refused(key: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(key)), label="start")
    end = data.draw(st.integers(start, len(key)), label="end")
    assume((start, end) != (0, len(key)))
    assert not is_well_formed_api_key(key[start:end])


@given(keys, st.text(base62 | any_character, min_size=1), st.booleans())
def test_extended_keys_are_refused(key: str, extra: str, in_front: bool) -> None:
    assert not is_well_formed_api_key(extra + key if in_front else key + extra)


@given(keys, st.data())
def test_a_character_dropped_or_added_anywhere_is_refused(key: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(key) - 1), label="position")
    assert not is_well_formed_api_key(key[:position] + key[position + 1 :])
    inserted = data.draw(base62, label="inserted")
    assert not is_well_formed_api_key(key[:position] + inserted + key[position:])


@given(st.text(any_character, max_size=80))
def test_arbitrary_text_never_crashes_the_check(text: str) -> None:
    accepted = is_well_formed_api_key(text)
    assert not accepted or checksum(text[:-CHECKSUM_LENGTH]) == text[-CHECKSUM_LENGTH:]
    assert not is_well_formed_session_token(text) or text.startswith(SESSION_TOKEN_PREFIX)


@given(st.integers(1, 8).flatmap(lambda width: st.tuples(st.just(width), st.integers(0))))
def test_base62_round_trips_at_a_fixed_width(case: tuple[int, int]) -> None:
    width, seed = case
    number = seed % 62**width
    encoded = encode_base62(number, width)
    assert len(encoded) == width
    assert decode_base62(encoded) == number
    # Fixed width and an alphabet in ASCII order: text order is number order.
    if number + 1 < 62**width:
        assert encoded < encode_base62(number + 1, width)


@given(st.integers(1, 8), st.integers(0))
def test_base62_refuses_what_does_not_fit(width: int, excess: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_base62(62**width + excess, width)
    with pytest.raises(ValueError, match="does not fit"):
        encode_base62(-1 - excess, width)


@given(keys, keys, st.binary(min_size=32, max_size=64), st.binary(min_size=32, max_size=64))
def test_hashes_are_keyed_and_tell_keys_apart(
    key: str, other: str, secret: bytes, other_secret: bytes
) -> None:
    hasher = SecretHasher(secret)
    digest = hasher.hash(key)
    assert len(digest) == 64
    assert key not in digest
    assert hasher.hash(key) == digest
    assert hasher.matches(key, digest)
    if other != key:
        assert hasher.hash(other) != digest
        assert not hasher.matches(other, digest)
    if other_secret != secret:
        assert SecretHasher(other_secret).hash(key) != digest


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80), st.binary(max_size=200))
def test_the_hash_is_hmac_sha256(value: str, secret: bytes) -> None:
    # Secrets longer than SHA-256's block are hashed first, as HMAC does.
    expected = hmac.digest(secret, value.encode("ascii"), "sha256").hex()
    assert SecretHasher(secret).hash(value) == expected


class _NoHashing:
    """A runtime whose every attribute fails the test: nothing may be hashed, cached or
    looked up for a value the format check refuses."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"runtime.{name} used for a malformed key")


@given(
    keys.flatmap(
        lambda key: st.integers(0, len(key) - 1).map(
            lambda position: key[:position] + key[position + 1 :]
        )
    )
    | st.text(any_character, max_size=60)
)
async def test_malformed_keys_are_refused_before_hashing(value: str) -> None:
    assume(not is_well_formed_api_key(value))
    with pytest.raises(Unauthorized) as refused:
        await authenticate_api_key(cast(Runtime, _NoHashing()), value, "192.0.2.1")
    assert refused.value.code == "ApiKeyMalformed"
