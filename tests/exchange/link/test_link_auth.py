"""The matcher link authenticates gateways: a token proven by challenge-response on TCP, a
0600 Unix socket, and no TCP listener without a token."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest

from exchange.link import auth
from exchange.link.client import LinkClient, LinkDown
from exchange.link.codec import encode_frame
from exchange.link.messages import Hello, Submit
from exchange.matcher.link_server import LinkHandler, LinkServer
from exchange.matcher.main import open_matcher
from exchange.matcher.metrics import LINKS_CLOSED
from exchange.model.commands import CreateAccount
from exchange.model.instruments import load_config
from tests.exchange.link.test_link_basic import read_frame
from tests.support.matcher_harness import REPO, StubFactory, inprocess_matcher

TOKEN = b"link-token-for-tests-0123456789"


@pytest.fixture
def process_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process demands (matcher) and proves (clients) TOKEN; restored afterwards."""
    monkeypatch.setattr(auth, "_token", TOKEN)
    monkeypatch.setattr(auth, "_token_loaded", True)
    yield


@asynccontextmanager
async def tcp_matcher(data_dir: Path) -> AsyncIterator[tuple[object, str]]:
    os.makedirs(data_dir, exist_ok=True)
    matcher = open_matcher(data_dir, load_config(), StubFactory(), fsync=False)
    matcher.ready = asyncio.Event()
    task = asyncio.create_task(matcher.run("tcp:127.0.0.1:0"))
    await asyncio.wait_for(matcher.ready.wait(), 10)
    assert matcher.server is not None
    try:
        yield matcher, f"tcp:127.0.0.1:{matcher.server.bound_port()}"
    finally:
        matcher.stop()
        await asyncio.wait_for(task, 20)


def _bad_token_closes() -> float:
    return float(LINKS_CLOSED.labels("bad_link_token")._value.get())


@pytest.mark.usefixtures("process_token")
async def test_tcp_link_needs_the_token(tmp_path: Path) -> None:
    async with tcp_matcher(tmp_path / "d") as (matcher, address):
        client = await LinkClient.connect(address, "gw-good")  # proves the process's token
        assert client.welcome.matcher_id
        await client.close()
        before = _bad_token_closes()
        for token in (b"another-token-of-enough-length", b""):
            with pytest.raises(LinkDown):
                await LinkClient.connect(address, "gw-bad", token=token or b"x" * 16,
                                         connect_timeout=5)
        assert _bad_token_closes() == before + 2
        # A peer that skips the challenge and sends commands gets nothing sequenced.
        host, port = address[4:].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        await read_frame(reader)  # the Challenge
        writer.write(encode_frame(Hello(gateway_id="gw-raw", proof=b"\0" * 32)))
        writer.write(encode_frame(Submit(req_id=1, command=CreateAccount(label="x"))))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no Welcome
        writer.close()
        assert matcher.engine.last_seq == 0  # type: ignore[attr-defined]


async def test_tcp_listener_refuses_to_start_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_token", None)
    monkeypatch.setattr(auth, "_token_loaded", True)
    server = LinkServer(cast(LinkHandler, object()))
    with pytest.raises(auth.LinkTokenError):
        await server.start("tcp:127.0.0.1:0")


def test_matcher_command_refuses_tcp_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != auth.TOKEN_FILE_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "exchange.cli.main", "matcher", "--data-dir",
         str(tmp_path / "p"), "--listen", "tcp:127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert out.returncode == 1 and "link-token-file" in out.stdout + out.stderr


async def test_unix_socket_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        async with inprocess_matcher(tmp_path / "d") as (_, address):
            mode = stat.S_IMODE(os.stat(address[len("unix:"):]).st_mode)
    finally:
        os.umask(old)
    assert mode == 0o600


def test_token_files_must_hold_enough_bytes(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(auth.LinkTokenError):
        auth.load_token(short)
    good = tmp_path / "good"
    good.write_bytes(TOKEN + b"\n")
    assert auth.load_token(good) == TOKEN
