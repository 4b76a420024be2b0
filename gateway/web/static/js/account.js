// The account side of the page: logon, order ticket, open orders (cancel, amend),
// balances and execution reports. Reports carry the account's own contiguous `account_seq`;
// after a reconnect the page asks for those it missed (`executions.replay`), then reloads
// open orders and balances, which are the authority.

import { describeError } from "./errors.js";
import { $, el } from "./views.js";

const REPORTS_KEPT = 100;
const REPLAY_PAGE = 500;
const REPLAY_PAGES_MAX = 20; // past that, the reloaded open orders are enough
const OPEN = new Set(["new", "partially_filled"]);

function clientOrderId() {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `web-${Date.now().toString(36)}-${random[0].toString(36)}${random[1].toString(36)}`;
}

export class Account {
  constructor(trading, onOrdersChanged) {
    this.trading = trading;
    this.onOrdersChanged = onOrdersChanged;
    this.orders = new Map(); // order_id -> order (API form)
    this.side = "buy";
    this.balanceTimer = null;
    this.lastAccountSeq = null; // the newest account_seq seen; null before the first logon
    this.held = null; // live reports that arrive during a replay, shown after it
  }

  // ---- session -----------------------------------------------------------------------

  async logon(apiKey, secret) {
    try {
      await this.trading.logon(apiKey, secret);
    } catch (err) {
      this.say("ticket-result", err.code ? describeError(err) : String(err.message || err), false);
    }
  }

  onSession(loggedOn, text) {
    $("logon-form").classList.toggle("hidden", loggedOn);
    $("session").classList.toggle("hidden", !loggedOn && !this.trading.credentials);
    $("session-text").textContent = loggedOn ? `Logged on: ${text}` : text;
    if (loggedOn) {
      if ($("ticket-result").classList.contains("bad")) this.say("ticket-result", "", true);
      this.refresh();
    } else if (!this.trading.credentials) {
      this.orders.clear();
      this.renderOrders();
      $("balances").replaceChildren();
      $("session").classList.add("hidden");
    }
  }

  async refresh() {
    await this.resume();
    try {
      const orders = await this.trading.request("orders.open", {});
      this.orders = new Map(orders.map((o) => [o.order_id, o]));
      this.renderOrders();
    } catch (err) {
      this.say("ticket-result", describeError(err), false);
    }
    this.loadBalances();
  }

  // Reports after the newest account_seq seen (none on the first logon: start from now).
  async resume() {
    this.held = [];
    try {
      if (this.lastAccountSeq === null) {
        const page = await this.trading.request("executions.replay", { after_seq: 0, limit: 1 });
        this.lastAccountSeq = page.last_seq;
        return;
      }
      for (let n = 0; n < REPLAY_PAGES_MAX; n++) {
        const page = await this.trading.request(
          "executions.replay", { after_seq: this.lastAccountSeq, limit: REPLAY_PAGE });
        if (page.gap) {
          this.say("ticket-result",
            "Some execution reports from while the page was away are no longer kept.", false);
          this.lastAccountSeq = page.last_seq;
          return;
        }
        for (const r of page.reports) this.show(r);
        if (!page.more || !page.reports.length) return;
      }
    } catch (err) {
      this.say("ticket-result", `Could not replay missed reports: ${describeError(err)}`, false);
    } finally {
      const held = this.held;
      this.held = null;
      for (const r of held) this.show(r);
    }
  }

  async loadBalances() {
    try {
      const { balances } = await this.trading.request("account.balances", {});
      $("balances").replaceChildren(...balances.map((b) => el("tr", { dataset: { asset: b.asset } },
        el("td", { textContent: b.asset }),
        el("td", { textContent: b.available }),
        el("td", { textContent: b.held }))));
    } catch (err) {
      this.say("ticket-result", describeError(err), false);
    }
  }

  // Balances change with every report: reload once they have stopped coming for a moment.
  balancesSoon() {
    clearTimeout(this.balanceTimer);
    this.balanceTimer = setTimeout(() => this.loadBalances(), 150);
  }

  // ---- order ticket ------------------------------------------------------------------

  setSide(side) {
    this.side = side;
    for (const button of document.querySelectorAll("#ticket [data-side]")) {
      button.classList.toggle("active", button.dataset.side === side);
    }
    $("place").className = side === "buy" ? "buy-button" : "sell-button";
    $("place").textContent = side === "buy" ? "Place buy order" : "Place sell order";
  }

  async place(symbol) {
    const type = $("o-type").value;
    const params = {
      symbol, side: this.side, type, qty: $("o-qty").value.trim(),
      tif: $("o-tif").value, client_order_id: clientOrderId(),
    };
    if (type === "limit") params.price = $("o-price").value.trim();
    if ($("o-post-only").checked) params.post_only = true;
    try {
      const result = await this.trading.request("order.place", params);
      this.say("ticket-result",
        `Order ${result.order_id} ${result.status} (engine seq ${result.engine_seq}).`, true);
    } catch (err) {
      this.say("ticket-result", `Rejected: ${describeError(err)}`, false);
    }
  }

  say(id, text, ok) {
    const node = $(id);
    node.textContent = text;
    node.className = ok ? "message ok" : "message bad";
  }

  // ---- open orders -------------------------------------------------------------------

  async cancel(order) {
    try {
      await this.trading.request("order.cancel", { symbol: order.symbol, order_id: order.order_id });
    } catch (err) {
      this.say("ticket-result", `Cancel failed: ${describeError(err)}`, false);
    }
  }

  async amend(order, newQty, newPrice) {
    const params = { symbol: order.symbol, order_id: order.order_id };
    if (newQty && newQty !== order.qty) params.new_qty = newQty;
    if (newPrice && newPrice !== order.price) params.new_price = newPrice;
    if (!params.new_qty && !params.new_price) return;
    try {
      const result = await this.trading.request("order.amend", params);
      this.say("ticket-result", `Order ${result.order_id} amended: ${result.status}.`, true);
    } catch (err) {
      this.say("ticket-result", `Amend failed: ${describeError(err)}`, false);
    }
  }

  renderOrders() {
    const rows = [...this.orders.values()].sort((a, b) => b.order_id - a.order_id).map((o) => {
      const qty = el("input", { value: o.qty, className: "amend-qty", size: 8 });
      const price = el("input", { value: o.price || "", className: "amend-price", size: 9 });
      return el("tr", { className: o.side === "buy" ? "bid" : "ask",
                        dataset: { orderId: String(o.order_id), clientOrderId: o.client_order_id } },
        el("td", { textContent: o.symbol }),
        el("td", { textContent: o.side }),
        el("td", { textContent: o.type + (o.post_only ? " post-only" : "") }),
        el("td", {}, price),
        el("td", {}, qty),
        el("td", { textContent: o.cum_qty }),
        el("td", { textContent: o.status }),
        el("td", { textContent: o.client_order_id }),
        el("td", {},
          el("button", { textContent: "Amend", className: "amend",
                         onclick: () => this.amend(o, qty.value.trim(), price.value.trim()) }),
          el("button", { textContent: "Cancel", className: "cancel",
                         onclick: () => this.cancel(o) })));
    });
    $("orders").replaceChildren(...rows);
    this.onOrdersChanged();
  }

  // ---- execution reports -------------------------------------------------------------

  // A pushed report: held back while missed ones are being replayed, so they stay in order.
  onReport(r) {
    if (this.held) this.held.push(r);
    else this.show(r);
  }

  show(r) {
    if (typeof r.account_seq === "number") {
      if (this.lastAccountSeq !== null && r.account_seq <= this.lastAccountSeq) return; // seen
      this.lastAccountSeq = r.account_seq;
    }
    const known = this.orders.get(r.order_id);
    if (OPEN.has(r.ord_status)) {
      this.orders.set(r.order_id, {
        ...(known || {}), order_id: r.order_id, client_order_id: r.client_order_id,
        symbol: r.symbol, side: r.side, type: known ? known.type : (r.price ? "limit" : "market"),
        post_only: known ? known.post_only : false, price: r.price, qty: r.qty,
        cum_qty: r.cum_qty, leaves_qty: r.leaves_qty, status: r.ord_status,
      });
    } else {
      this.orders.delete(r.order_id);
    }
    this.renderOrders();
    this.balancesSoon();
    let text = `${new Date(r.ts / 1e6).toISOString().slice(11, 23)} ${r.symbol} ` +
      `${r.side} #${r.order_id} ${r.exec_type} → ${r.ord_status}`;
    if (r.exec_type === "trade") {
      text += `: ${r.last_qty} @ ${r.last_px} (${r.liquidity}, fee ${r.fee} ${r.fee_asset})`;
    } else if (r.price) {
      text += `: ${r.qty} @ ${r.price}`;
    }
    if (r.exec_type === "rejected" && r.reject_code) {
      text += ` (${describeError({ code: r.reject_code })})`;
    }
    const item = el("li", { textContent: text, className: r.exec_type,
                            dataset: { execType: r.exec_type, orderId: String(r.order_id) } });
    const log = $("reports");
    log.prepend(item);
    while (log.children.length > REPORTS_KEPT) log.lastChild.remove();
  }
}
