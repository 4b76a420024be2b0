// The depth chart: cumulative bid and ask sizes against price, drawn on a canvas.
// Numbers here are for drawing only (pixels); the book itself stays in decimal strings.

const BID = "#26a69a";
const ASK = "#ef5350";

export function drawDepth(canvas, bids, asks) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  if (!bids.length && !asks.length) {
    ctx.fillStyle = "#8a93a6";
    ctx.fillText("no orders", width / 2 - 20, height / 2);
    return;
  }
  const cumulative = (levels) => {
    let total = 0;
    return levels.map(([p, q]) => [Number(p), (total += Number(q))]);
  };
  const b = cumulative(bids);
  const a = cumulative(asks);
  const prices = [...b, ...a].map(([p]) => p);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const top = Math.max(b.length ? b[b.length - 1][1] : 0, a.length ? a[a.length - 1][1] : 0);
  const pad = 14;
  const x = (p) => ((p - lo) / (hi - lo)) * (width - 2) + 1;
  const y = (q) => height - pad - (q / top) * (height - 2 * pad);
  const area = (points, color) => {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), y(0));
    let previous = 0;
    for (const [p, q] of points) {
      ctx.lineTo(x(p), y(previous)); // a step: the size changes at each level's price
      ctx.lineTo(x(p), y(q));
      previous = q;
    }
    ctx.lineTo(x(points[points.length - 1][0]), y(0));
    ctx.closePath();
    ctx.globalAlpha = 0.25;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.stroke();
  };
  area(b, BID);
  area(a, ASK);
  ctx.fillStyle = "#8a93a6";
  ctx.font = "11px sans-serif";
  ctx.fillText(String(lo), 2, height - 2);
  const hiText = String(hi);
  ctx.fillText(hiText, width - ctx.measureText(hiText).width - 2, height - 2);
}
