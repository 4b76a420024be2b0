"""The trading page in a real headless Chromium (Selenium) against `exchange up --demo`.

The page logs on with the demo credentials, places an order that rests and one that trades,
sees both in the ladder, the tape, the candles and the open orders, amends and cancels the
resting one, shows an error in words, and its book checksum equals /api/book's. The
market-data client's resync and reconnect rules are exercised in the same browser.

Set PAGE_SCREENSHOT=path to keep the screenshot (docs/img/trading-page.png is made so).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client import TradeClient
from gateway.marketdata.checksum import book_checksum

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SYMBOL = "BTC-USD"


def wait_for(what: str, check: Callable[[], Any], limit_s: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + limit_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # a stale element while the page re-renders: try again
            last_error = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`exchange up --demo` on a free port: {"url", "creds"}."""
    data_dir = tmp_path_factory.mktemp("page") / "data"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli.main", "up", "--demo", "--data-dir", str(data_dir),
         "--port", "0", "--fsync", "never", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO, text=True)
    assert proc.stdout is not None
    try:
        banner = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C" not in banner:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"exchange up failed: {banner}"
            banner += line
        found = re.search(r"ws://127\.0\.0\.1:(\d+)/ws/trade", banner)
        assert found, banner
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        yield {"url": f"http://127.0.0.1:{found.group(1)}", "creds": creds}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; scripts/test.sh does it as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1050", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def rest(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def other_account(exchange: dict[str, Any], coro: Callable[[TradeClient], Any]) -> Any:
    """Run `coro(client)` as the second demo account (the page trades as the first)."""
    creds = exchange["creds"][1]
    ws_url = exchange["url"].replace("http", "ws") + "/ws/trade"

    async def go() -> Any:
        async with await TradeClient.connect(ws_url, api_key=creds["api_key"],
                                             secret=creds["secret"]) as client:
            return await coro(client)

    return asyncio.run(go())


def test_page_trades_end_to_end(exchange: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = exchange["url"]
    # The other account's book: asks to trade against, bids around, for a deeper picture.
    for side, qty, price in (("sell", "0.0500", "50010.00"), ("sell", "0.1000", "50025.00"),
                             ("sell", "0.2500", "50040.00"), ("sell", "0.4000", "50080.00"),
                             ("buy", "0.0800", "48990.00"), ("buy", "0.2000", "48970.00"),
                             ("buy", "0.3500", "48940.00")):
        other_account(exchange, lambda c, s=side, q=qty, p=price: c.place(SYMBOL, s, q, p))

    d = browser
    d.get(url + "/")
    find = d.find_element
    css = By.CSS_SELECTOR

    def ladder(side: str) -> dict[str, str]:
        rows = d.find_elements(css, f"#ladder-{side} tr")
        return {r.get_attribute("data-price"): r.get_attribute("data-qty") for r in rows}

    wait_for("the book to sync", lambda: find(By.ID, "book-check").get_attribute("data-seq"))
    wait_for("the resting ask in the ladder", lambda: ladder("asks").get("50010.00") == "0.0500")

    # A wrong secret: refused, said in words, the form stays.
    mine = exchange["creds"][0]
    find(By.ID, "api-key").send_keys(mine["api_key"])
    find(By.ID, "api-secret").send_keys("not-the-secret")
    find(By.ID, "logon").click()
    refused = wait_for("the refusal", lambda: "2002" in (t := find(By.ID, "ticket-result").text)
                       and t)
    assert "Logon rejected" in refused and find(By.ID, "logon").is_displayed()

    # Log on: key and secret typed into the page, the signature made with WebCrypto.
    find(By.ID, "api-key").clear()
    find(By.ID, "api-key").send_keys(mine["api_key"])
    find(By.ID, "api-secret").send_keys(mine["secret"])
    find(By.ID, "logon").click()
    wait_for("logon", lambda: "Logged on" in find(By.ID, "session-text").text)
    assert find(By.ID, "api-secret").get_attribute("value") == "", "secret left in the form"
    wait_for("balances", lambda: d.find_elements(css, "#balances tr[data-asset='USD']"))

    def ticket(side: str, price: str, qty: str, tif: str = "GTC") -> str:
        previous = find(By.ID, "ticket-result").text
        find(css, f"#ticket [data-side='{side}']").click()
        Select(find(By.ID, "o-type")).select_by_value("limit")
        for field, value in (("o-price", price), ("o-qty", qty)):
            find(By.ID, field).clear()
            find(By.ID, field).send_keys(value)
        Select(find(By.ID, "o-tif")).select_by_value(tif)
        find(By.ID, "place").click()
        return str(wait_for("the ticket's answer",
                            lambda: (t := find(By.ID, "ticket-result").text) != previous and t))

    # An error, in words.
    answer = ticket("buy", "49000.001", "0.0100")
    assert "Rejected" in answer and "invalid value" in answer and "1002" in answer, answer

    # One that rests, one that trades (IOC against the other account's ask).
    assert " new " in ticket("buy", "49000.00", "0.0100"), "the resting order"
    assert " filled " in ticket("buy", "50010.00", "0.0200", "IOC"), "the trading order"

    wait_for("my bid in the ladder", lambda: ladder("bids").get("49000.00") == "0.0100")
    assert "●" in find(css, "#ladder-bids tr[data-price='49000.00'] td").text
    wait_for("the ask reduced by the trade", lambda: ladder("asks").get("50010.00") == "0.0300")
    wait_for("the trade on the tape", lambda: d.find_elements(
        css, "#tape tr[data-price='50010.00'][data-qty='0.0200']"))
    caption = find(By.ID, "candle-last")
    wait_for("the trade in the candle", lambda: caption.get_attribute("data-close") == "50010.00")
    assert int(caption.get_attribute("data-trades") or 0) >= 1
    assert d.find_elements(css, "#chart canvas"), "the chart library drew nothing"
    rows = wait_for("the open order", lambda: d.find_elements(css, "#orders tr"))
    assert len(rows) == 1
    assert rows[0].find_element(css, ".amend-price").get_attribute("value") == "49000.00"
    wait_for("the trade report",
             lambda: d.find_elements(css, "#reports li[data-exec-type='trade']"))

    # Amend: a lower quantity (keeps priority), seen in the open orders and the ladder.
    qty_box = rows[0].find_element(css, ".amend-qty")
    qty_box.clear()
    qty_box.send_keys("0.0050")
    rows[0].find_element(css, "button.amend").click()
    wait_for("the amended order", lambda: find(
        css, "#orders tr .amend-qty").get_attribute("value") == "0.0050")
    wait_for("the amended bid in the ladder", lambda: ladder("bids").get("49000.00") == "0.0050")

    shot = tmp_path / "trading-page.png"
    d.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("PAGE_SCREENSHOT"):
        shutil.copy(shot, os.environ["PAGE_SCREENSHOT"])

    # Cancel: gone from the open orders and from the ladder.
    find(css, "#orders tr button.cancel").click()
    wait_for("no open orders", lambda: not d.find_elements(css, "#orders tr"))
    wait_for("the bid gone from the ladder", lambda: "49000.00" not in ladder("bids"))
    wait_for("the cancel report",
             lambda: d.find_elements(css, "#reports li[data-exec-type='canceled']"))

    # The page's book checksum is /api/book's at the same seq.
    def same_checksum() -> bool:
        check = find(By.ID, "book-check")
        book = rest(f"{url}/api/book/{SYMBOL}?depth=50")
        return (check.get_attribute("data-seq") == str(book["seq"])
                and check.get_attribute("data-checksum") == str(book["checksum"]))

    wait_for("the page's checksum to equal /api/book's", same_checksum)
    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_page_checksum_rule_matches_the_server(exchange: dict[str, Any], browser: Any) -> None:
    browser.get(exchange["url"] + "/")
    cases = [
        ([["50010.00", "0.0300"], ["50025.00", "0.1000"]], [["49000.00", "0.0050"]]),
        ([], [["0.06000", "1.000"], ["0.05999", "12.500"]]),
        ([[f"{100 + i}.00", f"0.{i:04d}"] for i in range(1, 15)], []),
    ]
    got = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        import('/static/js/book.js').then((m) => done(arguments[0].map(
            ([asks, bids]) => m.checksum(asks, bids))));""",
        cases,
    )
    assert got == [book_checksum(asks, bids) for asks, bids in cases]


def test_md_client_resyncs_on_gap_and_reconnects(exchange: dict[str, Any], browser: Any) -> None:
    """The page's market-data client: a missed update or a wrong book is repaired by a
    resync, a dropped connection by reconnecting; the book is right again each time."""
    browser.get(exchange["url"] + "/")
    ws_url = exchange["url"].replace("http", "ws") + "/ws/md"
    browser.execute_async_script(
        """const [url, symbol, done] = arguments;
        import('/static/js/md.js').then(({MarketData}) => {
          const noop = () => {};
          window.testMd = new MarketData(url, {book: noop, trade: noop, ticker: noop,
                                               candle: noop, status: noop});
          window.testMd.connect();
          window.testMd.select(symbol);
          done();
        });""",
        ws_url, SYMBOL,
    )

    def md(expr: str) -> Any:
        return browser.execute_script(f"return window.testMd.{expr};")

    def synced_and_right() -> bool:
        book = rest(f"{exchange['url']}/api/book/{SYMBOL}?depth=50")
        return bool(md("synced")) and md("seq") == book["seq"] and (
            md("book.checksum()") == book["checksum"])

    wait_for("the test client to sync", synced_and_right)
    price = iter(f"{48000 + i}.00" for i in range(100))

    # A missed update: pretend the last one never arrived, then let the book move.
    browser.execute_script("window.testMd.seq -= 1;")
    other_account(exchange, lambda c: c.place(SYMBOL, "buy", "0.0010", next(price)))
    wait_for("a resync after the gap", lambda: md("resyncs") >= 1)
    wait_for("the book right after the gap", synced_and_right)

    # A wrong local book: the checksum of the next update disagrees.
    browser.execute_script("window.testMd.book.bids.set('1.00', '9.0000');")
    other_account(exchange, lambda c: c.place(SYMBOL, "buy", "0.0010", next(price)))
    wait_for("a resync after the checksum mismatch", lambda: md("resyncs") >= 2)
    wait_for("the book right after the mismatch", synced_and_right)

    # The connection drops: reconnect, subscribe again, a fresh snapshot.
    browser.execute_script("window.testMd.ws.close();")
    wait_for("the client to notice", lambda: not md("synced"))
    other_account(exchange, lambda c: c.place(SYMBOL, "buy", "0.0010", next(price)))
    wait_for("the book right after reconnecting", synced_and_right)
    other_account(exchange, lambda c: c.cancel_all(SYMBOL))


def test_trading_client_reconnects_and_replays_missed_reports(
    exchange: dict[str, Any], browser: Any
) -> None:
    """The page's trading connection drops: it logs on again by itself with the key and
    secret it holds, and shows the reports it missed meanwhile (executions.replay)."""
    from selenium.webdriver.common.by import By

    browser.get(exchange["url"] + "/")
    creds = exchange["creds"][1]
    ws_url = exchange["url"].replace("http", "ws") + "/ws/trade"
    browser.execute_async_script(
        """const [url, key, secret, done] = arguments;
        Promise.all([import('/static/js/trading.js'), import('/static/js/account.js')])
          .then(([{Trading}, {Account}]) => {
            window.testSessions = [];
            const trading = new Trading(url, {
              report: (r) => window.testAccount.onReport(r),
              session: (on, text) => {
                window.testSessions.push(on);
                window.testAccount.onSession(on, text);
              },
            });
            window.testTrading = trading;
            window.testAccount = new Account(trading, () => {});
            trading.logon(key, secret).then(() => done(), (e) => done(String(e.msg || e)));
          });""",
        ws_url, creds["api_key"], creds["secret"],
    )

    def js(expr: str) -> Any:
        return browser.execute_script(f"return {expr};")

    wait_for("the first logon", lambda: js("window.testAccount.lastAccountSeq") is not None)
    before = js("window.testAccount.lastAccountSeq")
    js("window.testTrading.ws.close()")
    wait_for("the drop to be seen", lambda: js("window.testSessions").count(False) >= 1)
    placed = other_account(exchange, lambda c: c.place(SYMBOL, "sell", "0.0010", "51000.00"))
    order_id = placed["order_id"]
    wait_for("logged on again", lambda: js("window.testSessions").count(True) >= 2)
    wait_for("the missed report shown", lambda: browser.find_elements(
        By.CSS_SELECTOR, f"#reports li[data-order-id='{order_id}']"))
    assert js("window.testAccount.lastAccountSeq") > before
    wait_for("the order among the open orders", lambda: browser.find_elements(
        By.CSS_SELECTOR, f"#orders tr[data-order-id='{order_id}']"))
    other_account(exchange, lambda c: c.cancel(SYMBOL, order_id=order_id))
