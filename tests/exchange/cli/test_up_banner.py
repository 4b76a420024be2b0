"""`exchange up`'s banner names every address with the scheme it is served with."""

from __future__ import annotations

import argparse
from pathlib import Path

from exchange.cli.up import banner


def args(**overrides: object) -> argparse.Namespace:
    base: dict[str, object] = dict(host="127.0.0.1", fix_port=9878, admin_port=9000, demo=True,
                                   tls_cert=None, tls_key=None)
    base.update(overrides)
    return argparse.Namespace(**base)


def test_plain_banner_names_ws_http_and_tcp(tmp_path: Path) -> None:
    text = "\n".join(banner(args(), 8080, tmp_path, tmp_path / "m.log", tmp_path / "c.json"))
    assert "ws://127.0.0.1:8080/ws/trade" in text and "ws://127.0.0.1:8080/ws/md" in text
    assert "http://127.0.0.1:8080/healthz" in text and "tcp://127.0.0.1:9878" in text
    assert "wss://" not in text and "https://" not in text


def test_tls_banner_names_wss_https_and_tls(tmp_path: Path) -> None:
    lines = banner(args(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem"), 8443,
                   tmp_path, tmp_path / "m.log", tmp_path / "c.json")
    text = "\n".join(lines)
    assert "wss://127.0.0.1:8443/ws/trade" in text and "wss://127.0.0.1:8443/ws/md" in text
    assert "https://127.0.0.1:8443/api/instruments" in text
    assert "tls://127.0.0.1:9878" in text
    assert "admin    http://127.0.0.1:9000/admin" in text  # the admin API is plain, local only
    assert not any(" ws://" in line or "tcp://" in line for line in lines)
