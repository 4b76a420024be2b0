// Market views: the ladder, the trades tape and the ticker. DOM is built with textContent
// only (never innerHTML), so nothing a server or user sends can become markup.

import { units } from "./book.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

const LADDER_LEVELS = 12;
const TAPE_ROWS = 40;

// `mine`: prices (strings) where the logged-on account has open orders of this symbol.
export function renderLadder(book, mine, onPrice) {
  const asks = book.top("asks", LADDER_LEVELS);
  const bids = book.top("bids", LADDER_LEVELS);
  const rows = (levels, cls) => {
    let total = 0;
    const widest = levels.reduce((sum, [, q]) => sum + Number(q), 0) || 1;
    return levels.map(([price, qty]) => {
      total += Number(qty);
      const row = el("tr", { className: cls, dataset: { price, qty } },
        el("td", { textContent: price + (mine.has(price) ? " ●" : "") }),
        el("td", { textContent: qty }),
        el("td", { textContent: total.toPrecision(6).replace(/\.?0+$/, "") }));
      row.style.setProperty("--fill", `${Math.round((100 * total) / widest)}%`);
      row.addEventListener("click", () => onPrice(price));
      return row;
    });
  };
  $("ladder-asks").replaceChildren(...rows(asks, "ask").reverse());
  $("ladder-bids").replaceChildren(...rows(bids, "bid"));
  const spread = $("spread");
  if (asks.length && bids.length) {
    const decimals = (asks[0][0].split(".")[1] || "").length;
    const diff = units(asks[0][0]) - units(bids[0][0]);
    spread.textContent = `spread ${formatUnits(diff, decimals)}`;
  } else {
    spread.textContent = "–";
  }
}

export function formatUnits(value, decimals) {
  const negative = value < 0n;
  let text = (negative ? -value : value).toString().padStart(decimals + 1, "0");
  if (decimals) text = `${text.slice(0, -decimals)}.${text.slice(-decimals)}`;
  return (negative ? "-" : "") + text;
}

export function renderCheck(md) {
  const check = $("book-check");
  check.dataset.seq = md.synced ? String(md.seq) : "";
  check.dataset.checksum = md.synced ? String(md.checksum) : "";
  check.className = md.synced ? "check ok" : "check bad";
  check.textContent = md.synced
    ? `seq ${md.seq} · checksum ${md.checksum} ✓`
    : "book not synced";
}

export class Tape {
  constructor(body) {
    this.body = body;
    this.trades = new Map(); // trade_id -> trade, at most TAPE_ROWS
  }

  clear() {
    this.trades.clear();
    this.body.replaceChildren();
  }

  // From REST (history) or the channel: deduplicated by trade_id, newest first.
  add(trades) {
    for (const t of trades) this.trades.set(t.trade_id, t);
    const ids = [...this.trades.keys()].sort((a, b) => b - a);
    for (const id of ids.slice(TAPE_ROWS)) this.trades.delete(id);
    this.body.replaceChildren(...ids.slice(0, TAPE_ROWS).map((id) => {
      const t = this.trades.get(id);
      const time = new Date(t.ts / 1e6).toISOString().slice(11, 19);
      return el("tr", { className: t.taker_side === "buy" ? "bid" : "ask",
                        dataset: { tradeId: String(id), price: t.price, qty: t.qty } },
        el("td", { textContent: time }),
        el("td", { textContent: t.price }),
        el("td", { textContent: t.qty }));
    }));
  }

  newestId() {
    let newest = null;
    for (const id of this.trades.keys()) if (newest === null || id > newest) newest = id;
    return newest;
  }
}

export function renderTicker(t) {
  const show = (id, price, qty) => {
    $(id).textContent = price === null ? "–" : qty ? `${price} × ${qty}` : price;
  };
  show("t-last", t.last);
  show("t-bid", t.best_bid, t.best_bid_qty);
  show("t-ask", t.best_ask, t.best_ask_qty);
  $("t-vol").textContent = t.volume_24h;
}

export function clearTicker() {
  for (const id of ["t-last", "t-bid", "t-ask", "t-vol"]) $(id).textContent = "–";
}
