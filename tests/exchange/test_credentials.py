"""Sealed HMAC secrets and Ed25519 public keys (exchange.credentials)."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchange import credentials
from exchange.credentials import KeyRing, KeyRingError, hmac_signature, new_key_line, verify

PAYLOAD = b"1700000000000\nn1\nlogon\nkey1"


def test_seal_and_open_round_trip_bound_to_the_api_key() -> None:
    ring = KeyRing.parse(new_key_line("a"))
    sealed = ring.seal("s3cret", "key1")
    assert sealed.startswith("sealed1:a:") and "s3cret" not in sealed
    assert ring.open(sealed, "key1") == "s3cret"
    assert ring.open(sealed, "key2") is None  # moved onto another key record: does not open
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert ring.open(tampered, "key1") is None
    assert KeyRing.parse(new_key_line("a")).open(sealed, "key1") is None  # another key


def test_rotation_new_key_seals_old_key_still_opens() -> None:
    old_line = new_key_line("old")
    old = KeyRing.parse(old_line)
    sealed_old = old.seal("x", "k")
    rotated = KeyRing.parse(new_key_line("new") + "\n" + old_line)
    assert rotated.open(sealed_old, "k") == "x"
    assert rotated.seal("y", "k").startswith("sealed1:new:")
    assert old.open(rotated.seal("y", "k"), "k") is None


@pytest.mark.parametrize("text", ["", "k1", "k1:abc", "bad id:" + "A" * 44,
                                  "k1:" + base64.b64encode(b"x" * 16).decode()])
def test_malformed_key_rings_are_refused(text: str) -> None:
    with pytest.raises(KeyRingError):
        KeyRing.parse(text)


def test_environment() -> None:
    line = new_key_line("e")
    ring = KeyRing.from_environment({credentials.KEY_ENV: line})
    assert ring is not None and ring.keys[0][0] == "e"
    assert KeyRing.from_environment({}) is None


def test_verify_hmac_sealed_clear_and_unknown() -> None:
    ring = KeyRing.parse(new_key_line())
    good = hmac_signature("s", PAYLOAD)
    assert verify(ring.seal("s", "key1"), "key1", PAYLOAD, good, ring)
    assert not verify(ring.seal("s", "key1"), "key1", PAYLOAD, good, None)  # no ring
    assert verify("s", "key1", PAYLOAD, good, ring)  # a clear secret of an older version
    assert not verify(None, "key1", PAYLOAD, good, ring)
    # The dummy secret used for unknown keys never verifies anything.
    assert not verify(None, "key1", PAYLOAD, hmac_signature("0" * 64, PAYLOAD), ring)


def test_verify_ed25519() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    record = credentials.ed25519_record(public)
    assert record.startswith("ed25519:")
    signature = private.sign(PAYLOAD).hex()
    assert verify(record, "key1", PAYLOAD, signature, None)
    assert not verify(record, "key1", PAYLOAD + b"x", signature, None)
    assert not verify(record, "key1", PAYLOAD, "00" * 64, None)
    assert not verify(record, "key1", PAYLOAD, "zz", None)
    assert credentials.parse_public_key(public.hex()) == public
    assert credentials.parse_public_key(base64.b64encode(public).decode()) == public
    assert credentials.parse_public_key("00" * 31) is None


def test_secrets_key_cli_makes_a_private_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    run = [sys.executable, "-m", "exchange.cli.main", "secrets-key", "--out", str(path)]
    assert subprocess.run(run, capture_output=True, timeout=60).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = KeyRing.load(path)
    assert len(ring.keys) == 1
    assert subprocess.run(run, capture_output=True, timeout=60).returncode == 1
    assert KeyRing.load(path) == ring
    line = subprocess.run([*run[:4], "--id", "k2"], capture_output=True, text=True,
                          timeout=60).stdout.strip()
    assert KeyRing.parse(line).keys[0][0] == "k2"


def test_an_unknown_key_pays_the_same_aes_gcm_open_as_a_sealed_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing.parse(new_key_line())
    opened: list[str] = []
    real_open = KeyRing.open

    def counting_open(self: KeyRing, stored: str, api_key: str) -> str | None:
        opened.append(stored)
        return real_open(self, stored, api_key)

    monkeypatch.setattr(KeyRing, "open", counting_open)
    signature = hmac_signature("s", PAYLOAD)
    assert verify(ring.seal("s", "key1"), "key1", PAYLOAD, signature, ring)
    assert not verify(None, "key1", PAYLOAD, signature, ring)
    assert len(opened) == 2  # one open each: the unknown key's fails, as it must
