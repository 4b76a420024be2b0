"""--settings FILE: one TOML for `exchange up` and `exchange gateway`; flags override it, --help
shows its values as defaults, and a bad file is refused in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.cli.main import parse_args

SETTINGS = """
[gateway]
matcher = "unix:/run/exchange/m.sock"
port = 9090
order-limit = 250
admin_port = 9001
reuse-port = true
redis = "redis://cache:6379/0"

[up]
data-dir = "/var/lib/exchange"
max-restarts = 7
fsync = "never"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exchange.toml"
    path.write_text(text)
    return str(path)


def test_gateway_reads_its_table_and_flags_override(tmp_path: Path) -> None:
    path = write(tmp_path, SETTINGS)
    args = parse_args(["gateway", "--settings", path, "--port", "9191"])
    assert (args.matcher, args.port, args.order_limit, args.admin_port, args.reuse_port,
            args.redis) == ("unix:/run/exchange/m.sock", 9191, 250, 9001, True,
                            "redis://cache:6379/0")
    assert args.request_limit == 500  # not in the file: the built-in default


def test_up_reads_both_tables(tmp_path: Path) -> None:
    path = write(tmp_path, SETTINGS)
    args = parse_args(["up", f"--settings={path}", "--max-restarts", "2"])
    assert (args.port, args.order_limit, args.admin_port, args.data_dir, args.max_restarts,
            args.fsync) == (9090, 250, 9001, Path("/var/lib/exchange"), 2, "never")
    assert not hasattr(args, "gateway_id")  # a gateway-only key of [gateway] is skipped


def test_help_shows_the_file_as_defaults(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SETTINGS)
    with pytest.raises(SystemExit):
        parse_args(["gateway", "--settings", path, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--port PORT (default: 9090)" in text
    assert "per --order-window-ms (default: 250)" in text


@pytest.mark.parametrize(("text", "message"), [
    ("[gateway]\nprot = 1\n", "[gateway] prot: not an option of exchange gateway"),
    ("[gateway]\nport = \"eighty\"\n", "[gateway] port: 'eighty' is not valid"),
    ("[gateway]\nport = 80.5\n", "[gateway] port: 80.5 is not valid here"),
    ("[gateway]\nreuse-port = 1\n", "[gateway] reuse-port: expected true or false"),
    ("[gatway]\nport = 1\n", "unknown table [gatway] (known: [gateway], [up])"),
    ("[up]\nfsync = \"sometimes\"\n", "[up] fsync: 'sometimes' is not one of always, never"),
    ("port = [", "not valid TOML"),
])
def test_bad_settings_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          text: str, message: str) -> None:
    path = write(tmp_path, text)
    command = "up" if text.startswith("[up]") else "gateway"
    with pytest.raises(SystemExit) as info:
        parse_args([command, "--settings", path])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"exchange {command}: error: {path}: ") and message in err


def test_gateway_without_matcher_says_where_to_give_it() -> None:
    from gateway.main import settings_from_args

    with pytest.raises(SystemExit, match="--matcher is required"):
        settings_from_args(parse_args(["gateway"]))
