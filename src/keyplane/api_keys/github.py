"""GitHub's secret scanning partner programme: is a request really GitHub's?

GitHub signs each request to a partner's endpoint with ECDSA (NIST P-256, SHA-256) over
the raw body, and names the key in ``Github-Public-Key-Identifier``; the signature, base64
of its DER form, is in ``Github-Public-Key-Signature``. GitHub publishes the public keys at
https://api.github.com/meta/public_keys/secret_scanning as
``{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}``. Keyplane never
fetches them (it needs no internet at run time): the operator saves that document as
``KEYPLANE_GITHUB_SECRET_SCANNING_KEYS_FILE``. The file is read again whenever it changes
(its modification time and size), so that a key GitHub adds is taken without a restart.
Keys that are not P-256 are ignored: they could not have made such a signature.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from keyplane.kit.errors import NotFound, Unauthorized, Unavailable

logger = logging.getLogger("keyplane.leaks")

KEY_IDENTIFIER_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"
# Far longer than any identifier or DER signature GitHub sends.
_MAX_HEADER_LENGTH = 512


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, int]
    keys: dict[str, ec.EllipticCurvePublicKey]


_cache: dict[Path, _Loaded] = {}
_lock = threading.Lock()


def parse_public_keys(document: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """The P-256 keys of GitHub's document, by identifier. ``ValueError`` when it is not
    that document at all."""
    data = json.loads(document)
    entries = data.get("public_keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError('no "public_keys" list')
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        identifier, pem = entry.get("key_identifier"), entry.get("key")
        if not isinstance(identifier, str) or not isinstance(pem, str):
            continue
        try:
            key = load_pem_public_key(pem.encode())
        except ValueError:
            continue
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[identifier] = key
    return keys


def public_keys(path: Path) -> dict[str, ec.EllipticCurvePublicKey]:
    """GitHub's keys from the configured file, read again when it changed."""
    try:
        status = path.stat()
        stamp = (status.st_mtime_ns, status.st_size)
        cached = _cache.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached.keys
        with _lock:
            keys = parse_public_keys(path.read_bytes())
            _cache[path] = _Loaded(stamp, keys)
        return keys
    except (OSError, ValueError) as exc:
        logger.error("cannot read GitHub's secret scanning keys from %s: %s", path, exc)
        raise Unavailable(
            "The GitHub secret scanning keys of this server cannot be read; the operator "
            "must fix its configuration.",
            headers={"Retry-After": "60"},
        ) from None


def _refused(message: str) -> Unauthorized:
    return Unauthorized(message, code="GitHubSignatureInvalid")


def verify_github_signature(
    keys_file: Path | None, identifier: str | None, signature: str | None, body: bytes
) -> None:
    """Returns when ``body`` was signed by the GitHub key ``identifier`` names; else
    ``Unauthorized``. ``NotFound`` when this server takes no part in the programme."""
    if keys_file is None:
        raise NotFound(
            "This server does not take part in GitHub's secret scanning partner programme.",
            code="ResourceNotFound",
        )
    if not identifier or not signature:
        raise _refused(
            f"A GitHub secret scanning request carries {KEY_IDENTIFIER_HEADER} and "
            f"{SIGNATURE_HEADER}."
        )
    if len(identifier) > _MAX_HEADER_LENGTH or len(signature) > _MAX_HEADER_LENGTH:
        raise _refused("The signature headers are not GitHub's.")
    key = public_keys(keys_file).get(identifier.strip())
    if key is None:
        raise _refused(f"{KEY_IDENTIFIER_HEADER} names no GitHub key this server knows.")
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise _refused("The request's signature does not match its body.") from None
