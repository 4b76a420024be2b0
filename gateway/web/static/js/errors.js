// Every error code of the API, in words a trader understands.

export const ERROR_TEXT = {
  1001: "The request was malformed (not JSON, wrong shape or unknown method).",
  1002: "A field has an invalid value: check the price and quantity against the tick and lot sizes.",
  1003: "Unknown symbol.",
  1004: "The message was too large.",
  2001: "Not logged on: log on with an API key first.",
  2002: "Logon rejected: wrong key or secret, a clock more than 5 s off, or a reused nonce.",
  2003: "This API key lacks the permission for that.",
  3001: "Insufficient balance: the available balance cannot cover this order.",
  3002: "Price outside the band: too far from the reference price.",
  3003: "Post-only order rejected: it would have taken liquidity.",
  3004: "Duplicate client order id: an open order already uses it.",
  3005: "Unknown order (it may already be filled or canceled).",
  3006: "Not filled: a fill-or-kill order could not fill in full, or a market order found no liquidity.",
  4001: "Rate limited: too many requests.",
  4002: "The exchange is overloaded: try again shortly.",
  5001: "Timed out: the outcome is unknown; check the order's status.",
  5002: "Internal error in the exchange.",
  // The engine's own codes: in a rejected report's reject_code (and the operator's tools).
  3007: "The symbol is halted.",
  3008: "Unknown account.",
  3009: "Duplicate API key.",
  3010: "Unknown or revoked API key.",
  3011: "Already listed: that asset or instrument exists.",
};

// "Insufficient balance: ... (code 3001)"; retry_after_ms and the server's own words added.
export function describeError(error) {
  if (!error) return "Unknown error.";
  const words = ERROR_TEXT[error.code] || `Error ${error.code}.`;
  let text = `${words} (code ${error.code}`;
  if (error.msg && !words.toLowerCase().startsWith(error.msg.toLowerCase())) {
    text += `: ${error.msg}`;
  }
  text += ")";
  if (error.retry_after_ms) text += ` Retry in ${(error.retry_after_ms / 1000).toFixed(1)} s.`;
  return text;
}
