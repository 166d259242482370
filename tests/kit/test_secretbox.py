"""Sealing secrets Keyplane must read back: AES-GCM under an HKDF-derived key."""

from __future__ import annotations

import pytest

from keyplane.kit.secretbox import SecretBox, SecretBoxError, derive_key

SERVER_SECRET = b"test-secret-" + b"x" * 40


def test_a_sealed_secret_opens_to_itself_and_is_not_in_the_clear() -> None:
    box = SecretBox(SERVER_SECRET, "webhook")
    sealed = box.seal("whsec_abc")
    assert "whsec_abc" not in sealed
    assert sealed.startswith("v1.")
    assert box.open(sealed) == "whsec_abc"
    # A random nonce each time: the same secret never seals to the same text.
    assert box.seal("whsec_abc") != sealed


def test_keys_differ_by_purpose_and_server_secret() -> None:
    assert derive_key(SERVER_SECRET, "a") != derive_key(SERVER_SECRET, "b")
    assert derive_key(SERVER_SECRET, "a") != derive_key(b"another-" + b"y" * 40, "a")
    assert len(derive_key(SERVER_SECRET, "a")) == 32
    sealed = SecretBox(SERVER_SECRET, "a").seal("value")
    with pytest.raises(SecretBoxError):
        SecretBox(SERVER_SECRET, "b").open(sealed)
    with pytest.raises(SecretBoxError):
        SecretBox(b"another-" + b"y" * 40, "a").open(sealed)


@pytest.mark.parametrize("sealed", ["", "v1.", "v2.abcd", "v1.!!!!", "v1.AAAA", "plain"])
def test_garbage_does_not_open(sealed: str) -> None:
    with pytest.raises(SecretBoxError):
        SecretBox(SERVER_SECRET, "a").open(sealed)


def test_an_altered_value_does_not_open() -> None:
    box = SecretBox(SERVER_SECRET, "a")
    sealed = box.seal("value")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretBoxError):
        box.open(flipped)


def test_the_server_secret_is_not_in_its_repr() -> None:
    assert "test-secret" not in repr(SecretBox(SERVER_SECRET, "a"))
