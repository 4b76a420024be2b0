"""API key credentials at rest: HMAC secrets sealed with AES-GCM, Ed25519 public keys.

The matcher journals and snapshots whatever a CreateApiKey command carries in `secret`; this
module decides what that is, so that no secret lies in clear on disk:

- `sealed1:<key id>:<base64url(nonce | ciphertext)>`: an HMAC secret encrypted with AES-256-GCM
  under the secrets key (`KeyRing`), with the API key as associated data (a sealed secret
  moved onto another key record does not open). The secrets key lives outside the data dir
  (`EXCHANGE_SECRETS_KEY_FILE` or `EXCHANGE_SECRETS_KEY`); the matcher never needs it, only
  the processes that create keys (admin) and check logons (gateway).
- `ed25519:<base64url(32-byte public key)>`: the exchange holds only the public key; the
  client signs the logon payload with its private key (as Binance's WebSocket API does).
- anything else is a clear secret written by an older version; still accepted at logon.

Key ring text: one `<key id>:<base64 32-byte key>` per line (or comma-separated in the
environment variable), the first one seals, all of them open. Rotation: put a new line
first, restart, re-issue the API keys sealed under the old one, then drop the old line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_PREFIX: Final = "sealed1:"
ED25519_PREFIX: Final = "ed25519:"
KEY_FILE_ENV: Final = "EXCHANGE_SECRETS_KEY_FILE"
KEY_ENV: Final = "EXCHANGE_SECRETS_KEY"
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_NONCE_BYTES = 12


class KeyRingError(ValueError):
    """The secrets key is missing or malformed."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class KeyRing:
    """AES-256 keys by id; `keys[0]` seals, any of them opens."""

    keys: tuple[tuple[str, bytes], ...]

    @staticmethod
    def parse(text: str) -> KeyRing:
        keys: list[tuple[str, bytes]] = []
        for raw in re.split(r"[,\n]", text):
            item = raw.strip()
            if not item or item.startswith("#"):
                continue
            key_id, sep, encoded = item.partition(":")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                key = b""
            if not sep or not _KEY_ID.fullmatch(key_id) or len(key) != 32:
                raise KeyRingError("each secrets key line must be '<id>:<base64 of 32 bytes>'")
            keys.append((key_id, key))
        if not keys:
            raise KeyRingError("the secrets key ring is empty")
        return KeyRing(tuple(keys))

    @staticmethod
    def load(path: str | Path) -> KeyRing:
        return KeyRing.parse(Path(path).read_text())

    @staticmethod
    def from_environment(environ: dict[str, str] | None = None) -> KeyRing | None:
        env = os.environ if environ is None else environ
        if env.get(KEY_ENV):
            return KeyRing.parse(env[KEY_ENV])
        if env.get(KEY_FILE_ENV):
            return KeyRing.load(env[KEY_FILE_ENV])
        return None

    def seal(self, secret: str, api_key: str) -> str:
        key_id, key = self.keys[0]
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, secret.encode(), api_key.encode())
        return f"{SEALED_PREFIX}{key_id}:{_b64e(nonce + sealed)}"

    def open(self, stored: str, api_key: str) -> str | None:
        """The clear secret of a sealed value, or None (unknown key id, tampered, not sealed)."""
        if not stored.startswith(SEALED_PREFIX):
            return None
        key_id, _, body = stored[len(SEALED_PREFIX):].partition(":")
        for kid, key in self.keys:
            if kid == key_id:
                try:
                    blob = _b64d(body)
                    clear = AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                                api_key.encode())
                    return clear.decode()
                except (InvalidTag, ValueError, binascii.Error):
                    return None
        return None


def new_key_line(key_id: str = "k1") -> str:
    """A fresh `<id>:<base64 key>` line for a key ring file."""
    if not _KEY_ID.fullmatch(key_id):
        raise KeyRingError("a key id is 1-32 characters of A-Z a-z 0-9 _ . -")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def write_new_key_file(path: Path, key_id: str = "k1") -> None:
    """Create a key ring file (0600) with one fresh key; refuses to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key_line(key_id) + "\n")


# ---- Ed25519 --------------------------------------------------------------------------------


def ed25519_record(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    Ed25519PublicKey.from_public_bytes(public_key)  # rejects malformed points
    return ED25519_PREFIX + _b64e(public_key)


def parse_public_key(text: str) -> bytes | None:
    """32 raw bytes from hex or base64 text, or None."""
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(_b64d(text.replace("+", "-").replace("/", "_")))
    for raw in candidates:
        if len(raw) == 32:
            try:
                Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                continue
            return raw
    return None


# ---- logon ----------------------------------------------------------------------------------

# A fixed stand-in used when a key is unknown, so that the check costs the same either way.
_DUMMY_SECRET: Final = "0" * 64


@functools.lru_cache(maxsize=8)
def _dummy_sealed(ring: KeyRing) -> str:
    return ring.seal(_DUMMY_SECRET, "\0no key\0")


def hmac_signature(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify(stored: str | None, api_key: str, payload: bytes, signature: str,
           ring: KeyRing | None) -> bool:
    """Whether `signature` over `payload` is good for the key record `stored`.

    HMAC records (sealed or clear) take a lowercase hex HMAC-SHA256 (64 characters); Ed25519
    records a hex signature (128 characters). `stored` None (unknown key) runs an HMAC over
    a dummy secret and answers False, so the work done does not say whether the key exists.
    """
    if stored is not None and stored.startswith(ED25519_PREFIX):
        try:
            public = Ed25519PublicKey.from_public_bytes(_b64d(stored[len(ED25519_PREFIX):]))
            public.verify(bytes.fromhex(signature), payload)
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True
    known = stored is not None
    secret: str | None = stored
    if stored is not None and stored.startswith(SEALED_PREFIX):
        secret = ring.open(stored, api_key) if ring is not None else None
        known = secret is not None
    elif stored is None and ring is not None:
        # An unknown key pays the AES-GCM open a sealed record costs (it fails: another
        # key's associated data), so that the time taken does not tell the two apart.
        ring.open(_dummy_sealed(ring), api_key)
    expected = hmac_signature(secret if secret is not None else _DUMMY_SECRET, payload)
    return hmac.compare_digest(expected, signature) and known


# ---- the process's key ring -----------------------------------------------------------------

_process_ring: KeyRing | None = None
_process_ring_loaded = False


def use_key_ring(ring: KeyRing | None) -> None:
    """Set the key ring this process seals and opens with (start-up, from a flag)."""
    global _process_ring, _process_ring_loaded
    _process_ring, _process_ring_loaded = ring, True


def process_key_ring() -> KeyRing | None:
    """The key ring set with `use_key_ring`, else the one the environment names (read once)."""
    global _process_ring, _process_ring_loaded
    if not _process_ring_loaded:
        _process_ring, _process_ring_loaded = KeyRing.from_environment(), True
    return _process_ring
