"""Who may speak on the matcher link: a shared token proven by challenge-response.

Anyone who reaches the link can create API keys and move money, so a TCP link needs a shared
secret. On connect the matcher sends `Challenge(nonce)` (32 random bytes); the gateway answers
in its Hello with `proof = HMAC-SHA256(token, "exchange-link-hello\\n" nonce "\\n" gateway_id)`.
The token itself never crosses the wire, and a recorded proof is worthless for the next
connection (a fresh nonce each time). A Unix socket is protected by its file mode (0600) and
checks the proof only when a token is configured.

The token file holds at least 16 bytes (e.g. `openssl rand -hex 32`); both ends read it from
--link-token-file or $EXCHANGE_LINK_TOKEN_FILE.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Final

TOKEN_FILE_ENV: Final = "EXCHANGE_LINK_TOKEN_FILE"
MIN_TOKEN_BYTES: Final = 16
NONCE_BYTES: Final = 32


class LinkTokenError(ValueError):
    """The link token is missing, unreadable or too short."""


def load_token(path: str | Path) -> bytes:
    try:
        token = Path(path).read_bytes().strip()
    except OSError as exc:
        raise LinkTokenError(f"cannot read the link token file {path}: {exc}") from exc
    if len(token) < MIN_TOKEN_BYTES:
        raise LinkTokenError(f"the link token in {path} must be at least {MIN_TOKEN_BYTES} bytes")
    return token


def hello_proof(token: bytes, nonce: bytes, gateway_id: str) -> bytes:
    return hmac.new(token, b"exchange-link-hello\n" + nonce + b"\n" + gateway_id.encode(),
                    hashlib.sha256).digest()


def proof_ok(token: bytes, nonce: bytes, gateway_id: str, proof: bytes) -> bool:
    return hmac.compare_digest(hello_proof(token, nonce, gateway_id), proof)


_token: bytes | None = None
_token_loaded = False


def use_link_token(token: bytes | None) -> None:
    """Set the token this process proves (gateway, admin) or demands (matcher) on the link."""
    global _token, _token_loaded
    _token, _token_loaded = token, True


def process_link_token() -> bytes | None:
    """The token set with `use_link_token`, else the file $EXCHANGE_LINK_TOKEN_FILE names."""
    global _token, _token_loaded
    if not _token_loaded:
        path = os.environ.get(TOKEN_FILE_ENV)
        _token, _token_loaded = (load_token(path) if path else None), True
    return _token
