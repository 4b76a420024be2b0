"""--help shows every option's default, with or without a help text of its own."""

from __future__ import annotations

import pytest

from exchange.cli.main import parse_args


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        parse_args([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_up_and_gateway_help_show_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    up = help_text(capsys, "up")
    assert "--port PORT (default: 8080)" in up
    assert "--data-dir DATA_DIR (default: data)" in up
    assert "--restart-window SECONDS (default: 300.0)" in up
    gateway = help_text(capsys, "gateway")
    assert "per --order-window-ms (default: 100)" in gateway
    assert "--host HOST (default: 127.0.0.1)" in gateway
    assert "(default: None)" not in gateway and "(default: False)" not in gateway
