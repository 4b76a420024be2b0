// The trading page: wires the market-data and trading clients to the views.

import { Account } from "./account.js";
import { CandleChart } from "./candles.js";
import { drawDepth } from "./depth.js";
import { MarketData } from "./md.js";
import { Trading } from "./trading.js";
import { $, clearTicker, el, renderCheck, renderLadder, renderTicker, Tape } from "./views.js";

const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;

const state = { symbol: null, interval: "1m", instruments: [] };
const tape = new Tape($("tape"));
const chart = new CandleChart($("chart"), $("candle-last"));

let drawPending = false;
function drawBook() {
  // Book messages can come many per frame: draw once per animation frame.
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    const mine = new Set([...account.orders.values()]
      .filter((o) => o.symbol === state.symbol && o.price).map((o) => o.price));
    renderLadder(md.book, mine, (price) => { $("o-price").value = price; });
    renderCheck(md);
    drawDepth($("depth"), md.book.top("bids"), md.book.top("asks"));
  });
}

const md = new MarketData(`${wsBase}/ws/md`, {
  book: drawBook,
  trade: (t) => {
    const newest = tape.newestId();
    if (newest !== null && t.trade_id > newest + 1) loadTrades(state.symbol); // missed some
    tape.add([t]);
  },
  ticker: renderTicker,
  candle: (c) => chart.update(c),
  status: (text, ok) => {
    const node = $("md-status");
    node.textContent = `market data: ${text}`;
    node.className = ok ? "status ok" : "status bad";
  },
});

const trading = new Trading(`${wsBase}/ws/trade`, {
  report: (r) => account.onReport(r),
  session: (loggedOn, text) => account.onSession(loggedOn, text),
});
const account = new Account(trading, drawBook);

async function loadTrades(symbol) {
  const response = await fetch(`/api/trades/${encodeURIComponent(symbol)}?limit=40`);
  if (response.ok && symbol === state.symbol) tape.add((await response.json()).trades);
}

function selectSymbol(symbol) {
  state.symbol = symbol;
  const inst = state.instruments.find((i) => i.symbol === symbol);
  $("o-price").placeholder = inst ? `tick ${inst.tick_size}` : "";
  $("o-qty").placeholder = inst ? `lot ${inst.lot_size}` : "";
  tape.clear();
  clearTicker();
  md.select(symbol);
  loadTrades(symbol);
  chart.load(symbol, state.interval);
}

async function start() {
  const response = await fetch("/api/instruments");
  state.instruments = (await response.json()).instruments;
  const select = $("symbol");
  select.replaceChildren(...state.instruments.map((i) =>
    el("option", { value: i.symbol, textContent: i.symbol })));
  select.addEventListener("change", () => selectSymbol(select.value));

  for (const button of document.querySelectorAll("#intervals button")) {
    button.addEventListener("click", () => {
      state.interval = button.dataset.interval;
      for (const b of document.querySelectorAll("#intervals button")) {
        b.classList.toggle("active", b === button);
      }
      chart.load(state.symbol, state.interval);
    });
  }
  for (const button of document.querySelectorAll("#ticket [data-side]")) {
    button.addEventListener("click", () => account.setSide(button.dataset.side));
  }
  account.setSide("buy");
  $("o-type").addEventListener("change", () => {
    const market = $("o-type").value === "market";
    $("price-row").classList.toggle("hidden", market);
    $("o-post-only").disabled = market;
  });
  $("logon-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key");
    const secret = $("api-secret");
    account.logon(key.value.trim(), secret.value);
    secret.value = ""; // held by the trading client only; not left in the form
  });
  $("logout").addEventListener("click", () => trading.logout());
  $("ticket").addEventListener("submit", (event) => {
    event.preventDefault();
    account.place(state.symbol);
  });

  md.connect();
  selectSymbol(state.instruments[0].symbol);
}

start();
