"""TLS for the gateway's public listeners: WebSocket and REST (wss/https) and FIX.

One server context from a PEM certificate chain and its private key (--tls-cert/--tls-key),
TLS 1.2 at least, Python's default cipher choice. The admin API stays plain HTTP: it listens
on 127.0.0.1 only.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsConfigError(ValueError):
    """The certificate or key cannot be used; the message says which and why."""


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot use --tls-cert {cert} / --tls-key {key}: {exc}") from exc
    return context
