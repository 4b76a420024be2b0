// The candle chart: history from GET /api/candles, the open candle from the `candles`
// channel, drawn with TradingView's Lightweight Charts (vendored, global LightweightCharts).

const NS_PER_S = 1e9;

function bar(c) {
  // Candle starts are whole minutes in ns: exact as JSON numbers, exact in seconds.
  return {
    time: Math.round(c.start / NS_PER_S),
    open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close),
  };
}

export class CandleChart {
  constructor(element, caption) {
    const LC = window.LightweightCharts;
    this.caption = caption;
    this.chart = LC.createChart(element, {
      autoSize: true,
      layout: { background: { color: "#131722" }, textColor: "#c7cbd6" },
      grid: { vertLines: { color: "#1e2433" }, horzLines: { color: "#1e2433" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    this.series = this.chart.addSeries(LC.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a",
      wickDownColor: "#ef5350", borderVisible: false,
    });
    this.interval = "1m";
    this.symbol = null;
    this.last = null; // the newest candle shown (API form)
    this.early = null; // an update that arrived while the history was loading
    this.loading = 0; // bumped per load, so a late answer for an old choice is ignored
    this.busy = false;
  }

  async load(symbol, interval) {
    this.symbol = symbol;
    this.interval = interval;
    this.last = null;
    this.early = null;
    const token = ++this.loading;
    this.busy = true;
    const response = await fetch(
      `/api/candles/${encodeURIComponent(symbol)}?interval=${interval}&limit=500`);
    const body = await response.json();
    if (token !== this.loading) return; // another symbol or interval was chosen meanwhile
    const candles = response.ok ? body.candles : [];
    this.series.setData(candles.map(bar));
    this.last = candles.length ? candles[candles.length - 1] : null;
    this.busy = false;
    const early = this.early;
    this.early = null;
    if (early) this.update(early);
    this.show();
  }

  // The open candle of some interval, from the `candles` channel.
  update(candle) {
    if (candle.symbol !== this.symbol || candle.interval !== this.interval) return;
    if (this.busy) {
      this.early = candle; // absolute values: the newest one is all that matters
      return;
    }
    if (this.last && candle.start < this.last.start) return; // older than what is drawn
    this.series.update(bar(candle));
    this.last = candle;
    this.show();
  }

  show() {
    const c = this.last;
    if (!c) {
      this.caption.textContent = `${this.interval}: no trades yet`;
      this.caption.dataset.start = "";
      return;
    }
    const when = new Date(c.start / 1e6).toISOString().slice(0, 16).replace("T", " ");
    this.caption.textContent = `${this.interval} ${when} UTC  O ${c.open}  H ${c.high}  ` +
      `L ${c.low}  C ${c.close}  V ${c.volume}  (${c.trades} trades)`;
    this.caption.dataset.start = String(c.start);
    this.caption.dataset.close = c.close;
    this.caption.dataset.trades = String(c.trades);
  }
}
