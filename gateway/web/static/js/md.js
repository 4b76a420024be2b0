// The market-data client: /ws/md for one symbol at a time, kept right by the API's rules.
//
// - A snapshot loads the book; an update applies only if its prev_seq is the seq held.
//   Anything else is a gap: the book is marked unsynced and a `resync` is asked for.
// - After every book message the local checksum must equal the message's; a mismatch asks
//   for a resync too. A heartbeat whose seq differs from the held one is a gap as well.
// - `resync_required` from the server: wait for the snapshot that follows.
// - A dropped connection, or 5 s without any message (heartbeats come every second),
//   reconnects with backoff (0.5 s doubling to 10 s) and subscribes again.

import { Book } from "./book.js";

const DEPTH = 50;
const SILENCE_MS = 5000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

export class MarketData {
  // handlers: {book(md), trade(msg), ticker(msg), candle(msg), status(text, ok), gap()}
  constructor(url, handlers) {
    this.url = url;
    this.on = handlers;
    this.symbol = null;
    this.book = new Book();
    this.seq = null; // seq of the last book message applied
    this.checksum = null; // the checksum both sides agree on at `seq`
    this.synced = false;
    this.ws = null;
    this.backoff = BACKOFF_MIN_MS;
    this.lastMessageAt = 0;
    this.resyncs = 0;
    this.nextId = 1;
    setInterval(() => this.watchdog(), 1000);
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = BACKOFF_MIN_MS;
      this.lastMessageAt = Date.now();
      this.on.status("connected", true);
      if (this.symbol) this.send("subscribe", this.subscribeParams(this.symbol));
    };
    ws.onmessage = (event) => {
      this.lastMessageAt = Date.now();
      this.handle(JSON.parse(event.data));
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.unsync("disconnected, reconnecting");
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    };
  }

  watchdog() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.symbol &&
        Date.now() - this.lastMessageAt > SILENCE_MS) {
      this.ws.close(); // onclose reconnects
    }
  }

  subscribeParams(symbol) {
    return {
      channels: ["book", "trades", "ticker", "candles", "heartbeat"],
      symbols: [symbol],
      depth: DEPTH,
    };
  }

  send(method, params) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ id: this.nextId++, method, params }));
    }
  }

  select(symbol) {
    if (this.symbol && this.symbol !== symbol) this.send("unsubscribe", { symbols: [this.symbol] });
    this.symbol = symbol;
    this.book = new Book();
    this.seq = null;
    this.unsync("subscribing");
    this.send("subscribe", this.subscribeParams(symbol));
  }

  unsync(why) {
    this.synced = false;
    this.on.status(why, false);
    this.on.book(this);
  }

  resync(why) {
    this.resyncs++;
    this.unsync(`resyncing (${why})`);
    this.send("resync", { symbols: [this.symbol] });
  }

  handle(msg) {
    if (msg.channel === "status") {
      if (msg.type === "error") this.on.status(`error ${msg.error.code}: ${msg.error.msg}`, false);
      else if (msg.type === "resync_required" && msg.symbol === this.symbol) {
        this.unsync("server resync, waiting for a snapshot");
      } else if (msg.type === "slow_consumer") this.on.status("too slow, reconnecting", false);
      return;
    }
    if (msg.symbol !== this.symbol) return; // left over from the previous symbol
    switch (msg.channel) {
      case "book": return this.onBook(msg);
      case "heartbeat":
        if (this.synced && msg.seq !== this.seq) this.resync(`heartbeat seq ${msg.seq}`);
        return;
      case "trades": return this.on.trade(msg);
      case "ticker": return this.on.ticker(msg);
      case "candles": return this.on.candle(msg);
    }
  }

  onBook(msg) {
    if (msg.type === "snapshot") {
      this.book.load(msg.bids, msg.asks);
    } else {
      if (!this.synced) return; // waiting for a snapshot: updates cannot be placed
      if (msg.prev_seq !== this.seq) {
        return this.resync(`gap: have ${this.seq}, update follows ${msg.prev_seq}`);
      }
      this.book.apply(msg.bids, msg.asks);
    }
    this.seq = msg.seq;
    const mine = this.book.checksum();
    if (mine !== msg.checksum) {
      return this.resync(`checksum ${mine} != ${msg.checksum}`);
    }
    this.checksum = mine;
    if (!this.synced) {
      this.synced = true;
      this.on.status("live", true);
    }
    this.on.book(this);
  }
}
