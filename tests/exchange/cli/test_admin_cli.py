"""`exchange admin` against a matcher process: JSON out, clear errors, exit codes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.matcher_harness import REPO, MatcherProcess


def _admin(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli.main", "admin", "--matcher", address, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


async def test_admin_cli(tmp_path: Path) -> None:
    async with MatcherProcess.started(tmp_path / "d") as proc:
        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return _admin(proc.address, *args)

        out = await asyncio.to_thread(run, "create-account", "--label", "bob")
        assert out.returncode == 0, out.stderr
        account = json.loads(out.stdout)["account_id"]
        out = await asyncio.to_thread(run, "create-key", "--account", str(account),
                                      "--permissions", "trade,read")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["permissions"] == ["trade", "read"] and len(doc["secret"]) == 64
        out = await asyncio.to_thread(run, "deposit", "--account", str(account), "--asset",
                                      "USD", "--amount", "100.5")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["available"] == "100.500000"
        out = await asyncio.to_thread(run, "deposit", "--account", str(account), "--asset",
                                      "USD", "--amount", "1e3")
        assert out.returncode == 1
        assert json.loads(out.stderr)["error"]["code"] == 1002
        out = await asyncio.to_thread(run, "halt", "BTC-USD")
        assert out.returncode == 0 and json.loads(out.stdout) == {"symbol": "BTC-USD",
                                                                  "halted": True}
        out = await asyncio.to_thread(run, "balances", "--account", str(account))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["balances"][0]["available"] == "100.500000"
        # Options may follow the command, overriding the one before it.
        out = await asyncio.to_thread(
            _admin, "unix:/nonexistent/m.sock", "balances", "--account", str(account),
            "--matcher", proc.address)
        assert out.returncode == 0, out.stderr
        out = await asyncio.to_thread(run, "create-key", "--account", "0")
        assert out.returncode == 1
        assert "fee account and cannot have API keys" in json.loads(out.stderr)["error"]["msg"]
    out = await asyncio.to_thread(_admin, "unix:/nonexistent/m.sock", "balances",
                                  "--account", "1")
    assert out.returncode == 2
    error = json.loads(out.stderr)["error"]
    assert error["code"] == 5002
    assert error["msg"].startswith("cannot reach the matcher at unix:/nonexistent/m.sock: ")
    assert error["msg"].endswith("(nothing was sent)")
    out = await asyncio.to_thread(_admin, "nowhere", "balances", "--account", "1")
    assert out.returncode == 1 and json.loads(out.stderr)["error"]["code"] == 1002


async def test_admin_cli_out_of_range_numbers_answer_1002(tmp_path: Path) -> None:
    async with MatcherProcess.started(tmp_path / "d") as proc:
        for args in (("--account", "1", "--amount", "18446744073709.551616"),
                     ("--account", str(2**64), "--amount", "1")):
            out = await asyncio.to_thread(_admin, proc.address, "deposit", "--asset", "USD",
                                          *args)
            assert out.returncode == 1, out.stderr
            assert json.loads(out.stderr)["error"]["code"] == 1002
            assert "Traceback" not in out.stderr


async def test_admin_cli_revokes_a_key_once(tmp_path: Path) -> None:
    async with MatcherProcess.started(tmp_path / "d") as proc:
        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return _admin(proc.address, *args)

        out = await asyncio.to_thread(run, "create-account")
        account = json.loads(out.stdout)["account_id"]
        out = await asyncio.to_thread(run, "create-key", "--account", str(account))
        assert out.returncode == 0, out.stderr
        key = json.loads(out.stdout)["api_key"]
        out = await asyncio.to_thread(run, "revoke-key", "--key", key)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert (doc["api_key"], doc["account_id"], doc["revoked"]) == (key, account, True)
        out = await asyncio.to_thread(run, "revoke-key", "--key", key)
        assert out.returncode == 1
        assert json.loads(out.stderr)["error"] == {"code": 3010, "msg": "unknown api key"}
        out = await asyncio.to_thread(run, "revoke-key", "--key", "k" * 201)
        assert out.returncode == 1 and json.loads(out.stderr)["error"]["code"] == 1002


async def test_admin_cli_lists_and_updates_instruments(tmp_path: Path) -> None:
    async with MatcherProcess.started(tmp_path / "d") as proc:
        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return _admin(proc.address, *args)

        sol = ["--symbol", "SOL-USD", "--base", "SOL", "--quote", "USD", "--tick-size", "0.01",
               "--lot-size", "0.01", "--min-qty", "0.01", "--max-qty", "10000",
               "--price-band-pct", "10", "--maker-fee-bps", "10", "--taker-fee-bps", "20",
               "--reference-price", "150.00"]
        out = await asyncio.to_thread(run, "list-instrument", *sol)
        assert out.returncode == 1
        assert "unknown asset SOL" in json.loads(out.stderr)["error"]["msg"]
        out = await asyncio.to_thread(run, "list-asset", "--asset", "SOL", "--decimals", "9")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"asset": "SOL", "decimals": 9}
        out = await asyncio.to_thread(run, "list-instrument", *sol)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["reference_price"] == "150.00"
        out = await asyncio.to_thread(run, "update-instrument", "SOL-USD",
                                      "--price-band-pct", "101")
        assert out.returncode == 1 and json.loads(out.stderr)["error"]["code"] == 1002
        out = await asyncio.to_thread(run, "update-instrument", "SOL-USD",
                                      "--price-band-pct", "5", "--max-qty", "500")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert (doc["price_band_pct"], doc["max_qty"], doc["tick_size"]) == (5, "500", "0.01")
        out = await asyncio.to_thread(run, "instruments")
        assert out.returncode == 0, out.stderr
        listed = json.loads(out.stdout)
        assert listed["instruments"][-1] == doc
        assert {"asset": "SOL", "decimals": 9} in listed["assets"]
        # Halting a listed symbol works on a fresh link (the matcher's live set).
        out = await asyncio.to_thread(run, "halt", "SOL-USD")
        assert out.returncode == 0, out.stderr


async def test_admin_cli_key_limits(tmp_path: Path) -> None:
    """create-key with a tier, set-key-limits (one limit or both, `default`), show-key; a bad
    value is 1002 with nothing journaled, an unknown key 3010."""
    async with MatcherProcess.started(tmp_path / "d") as proc:
        def run(*args: str) -> dict[str, Any]:
            out = _admin(proc.address, *args)
            assert out.returncode == 0, out.stderr
            doc: dict[str, Any] = json.loads(out.stdout)
            return doc

        def refused(*args: str) -> dict[str, Any]:
            out = _admin(proc.address, *args)
            assert out.returncode == 1, out.stdout
            assert "Traceback" not in out.stderr
            error: dict[str, Any] = json.loads(out.stderr)["error"]
            return error

        account = (await asyncio.to_thread(run, "create-account"))["account_id"]
        doc = await asyncio.to_thread(run, "create-key", "--account", str(account),
                                      "--orders-limit", "500")
        key = doc["api_key"]
        assert (doc["orders_limit"], doc["requests_limit"]) == (500, None)
        doc = await asyncio.to_thread(run, "set-key-limits", "--key", key, "--requests", "2000")
        assert (doc["orders_limit"], doc["requests_limit"]) == (500, 2000)
        doc = await asyncio.to_thread(run, "show-key", "--key", key)
        assert doc == {"api_key": key, "account_id": account, "permissions": ["trade", "read"],
                       "orders_limit": 500, "requests_limit": 2000}
        assert "secret" not in doc
        doc = await asyncio.to_thread(run, "set-key-limits", "--key", key, "--orders", "default")
        assert (doc["orders_limit"], doc["requests_limit"]) == (None, 2000)

        seq = doc["seq"]
        for args in (("--orders", "0"), ("--orders", "1000001"), ("--requests", "-3"),
                     ("--orders", "fast"), ()):
            error = await asyncio.to_thread(refused, "set-key-limits", "--key", key, *args)
            assert error["code"] in (1001, 1002), error
        error = await asyncio.to_thread(refused, "create-key", "--account", str(account),
                                        "--orders-limit", "0")
        assert error["code"] == 1002 and "1..1000000" in error["msg"]
        error = await asyncio.to_thread(refused, "set-key-limits", "--key", "nosuchkey",
                                        "--orders", "5")
        assert error == {"code": 3010, "msg": "unknown api key"}
        error = await asyncio.to_thread(refused, "show-key", "--key", "nosuchkey")
        assert error["code"] == 3010
        # Nothing was journaled by the refused ones but the unknown key's command.
        doc = await asyncio.to_thread(run, "set-key-limits", "--key", key, "--orders", "1")
        assert doc["seq"] == seq + 2 and doc["orders_limit"] == 1
