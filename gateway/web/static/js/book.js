// A local copy of one symbol's L2 book (as /ws/md sends it) and its checksum.
//
// Prices and quantities stay the canonical decimal strings the server sends: they are only
// compared (as integers of their smallest unit) and displayed, never computed with, so
// nothing is rounded. The checksum is the API's rule (Kraken's): CRC32 of the top 10 asks
// (low to high) then the top 10 bids (high to low), each level's price then quantity with
// the "." removed and leading zeros stripped.

const CHECKSUM_LEVELS = 10;

// A canonical decimal as an integer of its smallest unit: "50010.50" -> 5001050n.
// Every price of one instrument has the same number of decimals, so these compare exactly.
export function units(text) {
  return BigInt(text.replace(".", ""));
}

function digits(text) {
  return text.replace(".", "").replace(/^0+/, "");
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(text) {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) {
    crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export function checksum(asks, bids) {
  let text = "";
  for (const [price, qty] of asks.slice(0, CHECKSUM_LEVELS)) text += digits(price) + digits(qty);
  for (const [price, qty] of bids.slice(0, CHECKSUM_LEVELS)) text += digits(price) + digits(qty);
  return crc32(text);
}

export class Book {
  constructor() {
    this.bids = new Map(); // price -> qty (strings)
    this.asks = new Map();
  }

  load(bids, asks) {
    this.bids.clear();
    this.asks.clear();
    this.apply(bids, asks);
  }

  // Absolute level totals; "0" deletes the level.
  apply(bids, asks) {
    for (const [side, levels] of [[this.bids, bids], [this.asks, asks]]) {
      for (const [price, qty] of levels) {
        if (units(qty) === 0n) side.delete(price);
        else side.set(price, qty);
      }
    }
  }

  // The best n levels of a side, best first, as [price, qty] pairs.
  top(side, n = Infinity) {
    const isBid = side === "bids";
    const levels = [...this[side].entries()].map(([p, q]) => [p, q, units(p)]);
    levels.sort((a, b) => (isBid ? (a[2] > b[2] ? -1 : 1) : (a[2] < b[2] ? -1 : 1)));
    return levels.slice(0, n).map(([p, q]) => [p, q]);
  }

  checksum() {
    return checksum(this.top("asks", CHECKSUM_LEVELS), this.top("bids", CHECKSUM_LEVELS));
  }
}
