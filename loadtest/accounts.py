"""Create and fund the load test's accounts before the run, through the operator's interface.

Three ways in, all the operator's: the matcher link with `exchange.link.admin_ops` (what
`exchange admin --matcher ADDR` uses), the gateway's localhost admin HTTP API with its bearer
token, or a credentials file written by an earlier run or by hand
(`[{"api_key", "secret", "account_id"}]`). Funding is generous so that no order of the
mix is ever refused for balance: an insufficient-balance answer would be a test artefact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from loadtest.spec import Credential

# Per account; the mix holds at most ~max_open orders of a few hundred quote units each.
DEFAULT_FUNDING: dict[str, str] = {"USD": "100000000", "BTC": "10000", "ETH": "100000"}
# Admin commands in flight at once (each is journaled and fsynced by the matcher).
CONCURRENCY = 16


async def provision_via_matcher(
    matcher: str,
    count: int,
    label: str = "loadtest",
    funding: dict[str, str] | None = None,
) -> list[Credential]:
    """Create `count` accounts with a trade key each, funded in every configured asset."""
    from exchange.link import admin_ops
    from exchange.link.client import LinkClient

    funding = DEFAULT_FUNDING if funding is None else funding
    client = await LinkClient.connect(matcher, f"loadtest-admin-{id(funding):x}")
    try:
        known = client.welcome.config.assets
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> Credential:
            async with gate:
                account_id = await admin_ops.create_account(client, f"{label}-{i}")
                api_key, secret = await admin_ops.create_api_key(
                    client, account_id, ("trade", "read")
                )
                for asset, amount in funding.items():
                    if asset in known:
                        await admin_ops.deposit(client, account_id, asset, amount)
                return Credential(api_key=api_key, secret=secret, account_id=str(account_id))

        return list(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        await client.close()


async def provision_via_admin_http(
    admin_url: str,
    token: str,
    count: int,
    label: str = "loadtest",
    funding: dict[str, str] | None = None,
) -> list[Credential]:
    """The same through `POST /admin/accounts`, `.../keys` and `.../deposit`."""
    import aiohttp

    funding = DEFAULT_FUNDING if funding is None else funding
    base = admin_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers, raise_for_status=True) as http:

        async def post(path: str, body: dict[str, object]) -> dict[str, object]:
            async with http.post(f"{base}{path}", json=body) as resp:
                data: dict[str, object] = await resp.json()
                return data

        async def one(i: int) -> Credential:
            async with gate:
                account = (await post("/admin/accounts", {"label": f"{label}-{i}"}))["account_id"]
                key = await post(f"/admin/accounts/{account}/keys",
                                 {"permissions": ["trade", "read"]})
                for asset, amount in funding.items():
                    await post(f"/admin/accounts/{account}/deposit",
                               {"asset": asset, "amount": amount})
                return Credential(api_key=str(key["api_key"]), secret=str(key["secret"]),
                                  account_id=str(account))

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def save(credentials: list[Credential], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(credentials))
    path.chmod(0o600)  # secrets


def load(path: Path) -> list[Credential]:
    return msgspec.json.decode(path.read_bytes(), type=list[Credential])
