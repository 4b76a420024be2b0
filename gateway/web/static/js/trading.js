// The trading client: /ws/trade requests and pushed execution reports.
//
// The API key and secret live only in this object (never in storage, cookies or the URL);
// the logon signature is HMAC-SHA256 computed with WebCrypto:
//   hex(HMAC_SHA256(secret, `${timestamp}\n${nonce}\nlogon\n${api_key}`))
// If the connection drops while logged on, it reconnects with backoff and logs on again
// with a fresh timestamp and nonce; `onSession(true)` then tells the page to reload open
// orders and balances (reports sent while it was away are not replayed).

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;

const encoder = new TextEncoder();

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function signLogon(secret, timestamp, nonce, apiKey) {
  if (!window.crypto || !window.crypto.subtle) {
    throw new Error("WebCrypto is unavailable: open the page over https or on localhost");
  }
  const key = await crypto.subtle.importKey(
    "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const payload = encoder.encode(`${timestamp}\n${nonce}\nlogon\n${apiKey}`);
  return hex(await crypto.subtle.sign("HMAC", key, payload));
}

function randomNonce() {
  return hex(crypto.getRandomValues(new Uint8Array(16)));
}

export class Trading {
  // handlers: {report(msg), session(loggedOn, text)}
  constructor(url, handlers) {
    this.url = url;
    this.on = handlers;
    this.credentials = null; // {apiKey, secret}: in memory only
    this.ws = null;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.nextId = 1;
    this.backoff = BACKOFF_MIN_MS;
    this.accountId = null;
  }

  get loggedOn() {
    return this.accountId !== null;
  }

  // Resolves with the logon result, or throws {code, msg} / Error.
  async logon(apiKey, secret) {
    this.credentials = { apiKey, secret };
    try {
      await this.open();
      return await this.sendLogon();
    } catch (err) {
      this.credentials = null; // refused: nothing to log on again with after a drop
      throw err;
    }
  }

  logout() {
    this.credentials = null;
    this.accountId = null;
    if (this.ws) this.ws.close();
    this.on.session(false, "logged out");
  }

  open() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.backoff = BACKOFF_MIN_MS;
        resolve();
      };
      ws.onerror = () => reject(new Error("cannot connect to the trading endpoint"));
      ws.onmessage = (event) => this.handle(JSON.parse(event.data));
      ws.onclose = () => this.closed(ws);
    });
  }

  closed(ws) {
    if (this.ws !== ws) return;
    this.ws = null;
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject({ code: 5001, msg: "connection lost: outcome unknown" });
    }
    this.pending.clear();
    const wasOn = this.loggedOn;
    this.accountId = null;
    if (!this.credentials) return;
    if (wasOn) this.on.session(false, "connection lost, reconnecting");
    setTimeout(() => this.reconnect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
  }

  async reconnect() {
    if (!this.credentials) return;
    try {
      await this.open();
      await this.sendLogon();
    } catch (err) {
      if (err && err.code === 2002) this.credentials = null; // the key itself is refused
      this.on.session(false, "reconnect failed");
    }
  }

  async sendLogon() {
    const { apiKey, secret } = this.credentials;
    const timestamp = Date.now();
    const nonce = randomNonce();
    const signature = await signLogon(secret, timestamp, nonce, apiKey);
    const result = await this.request("session.logon", {
      api_key: apiKey, timestamp, nonce, signature, cancel_on_disconnect: "none",
    });
    this.accountId = result.account_id;
    this.on.session(true, `account ${result.account_id}`);
    return result;
  }

  // Resolves with `result`, or rejects with the response's `error` ({code, msg, ...}).
  request(method, params = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject({ code: 2001, msg: "not connected" });
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject({ code: 5001, msg: "no answer in time: outcome unknown" });
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  handle(msg) {
    if (msg.type === "execution") return this.on.report(msg);
    const waiter = this.pending.get(msg.id);
    if (!waiter) return;
    this.pending.delete(msg.id);
    clearTimeout(waiter.timer);
    if (msg.status === 200) waiter.resolve(msg.result);
    else waiter.reject(msg.error || { code: 5002, msg: `status ${msg.status}` });
  }
}
