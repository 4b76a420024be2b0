"""Listing commands: new assets, new instruments, and new live parameters of an instrument.

The engine's `config` is the live set (`EngineBase.config`, a copy of the initial config):
these commands change it through the journal like any other command, so a replay rebuilds
exactly the set that was acknowledged, and snapshots carry it. Each answers with its
past-tense event (carrying the asset or the whole derived instrument) or a CommandRejected,
and changes nothing on reject.

A stop_market buy waiting off the book holds funds at the top of the band around its stop
price (`EngineBase._stop_hold`), so a new band moves those holds: each account must cover
the difference from its available balance, else the update is refused (3001) and nothing
changes. Resting orders keep their prices; the band applies to prices asked from then on.
"""

from __future__ import annotations

from exchange.engine.accounts import Balance
from exchange.engine.base import EngineBase
from exchange.engine.book import Book
from exchange.model.codes import Code
from exchange.model.commands import ListAsset, ListInstrument, UpdateInstrument
from exchange.model.events import (
    AssetListed,
    CommandRejected,
    Event,
    InstrumentListed,
    InstrumentUpdated,
)
from exchange.model.instruments import (
    CONFIG_FIELDS,
    ConfigError,
    Instrument,
    check_asset,
    derive_instrument,
)

_INVALID = int(Code.INVALID_VALUE)
_UNKNOWN_SYMBOL = int(Code.UNKNOWN_SYMBOL)
_LISTED = int(Code.ALREADY_LISTED)
_BALANCE = int(Code.INSUFFICIENT_BALANCE)

# The live parameters an UpdateInstrument may carry.
_UPDATABLE = ("price_band_pct", "maker_fee_bps", "taker_fee_bps", "min_qty", "max_qty",
              "reference_price")


def _rejected(seq: int, ts: int, code: int, reason: str) -> list[Event]:
    return [CommandRejected(seq=seq, ts=ts, code=code, reason=reason)]


class Listing(EngineBase):
    """Listing commands, as methods of the engine."""

    def _list_asset(self, c: ListAsset, seq: int, ts: int) -> list[Event]:
        try:
            asset = check_asset(c.asset, c.decimals)
        except ConfigError as exc:
            return _rejected(seq, ts, _INVALID, str(exc))
        if asset.name in self.config.assets:
            return _rejected(seq, ts, _LISTED, f"asset {asset.name} is already listed")
        self.config.assets[asset.name] = asset
        self._assets.append(asset.name)
        self._net_deposits[asset.name] = 0
        for acct in self._accounts.values():
            acct.balances[asset.name] = Balance()
        self.listing_changes += 1
        return [AssetListed(seq=seq, ts=ts, asset=asset)]

    def _list_instrument(self, c: ListInstrument, seq: int, ts: int) -> list[Event]:
        if c.symbol in self._books:
            return _rejected(seq, ts, _LISTED, f"instrument {c.symbol} is already listed")
        raw: dict[str, object] = {"symbol": c.symbol}
        raw.update((f, getattr(c, f)) for f in CONFIG_FIELDS)
        try:
            inst = derive_instrument(raw, self.config.assets)
        except ConfigError as exc:
            return _rejected(seq, ts, _INVALID, str(exc))
        self.config.instruments[inst.symbol] = inst
        self._books[inst.symbol] = Book(inst)
        self.listing_changes += 1
        return [InstrumentListed(seq=seq, ts=ts, instrument=inst)]

    def _update_instrument(self, c: UpdateInstrument, seq: int, ts: int) -> list[Event]:
        book = self._books.get(c.symbol)
        if book is None:
            return _rejected(seq, ts, _UNKNOWN_SYMBOL, f"unknown symbol {c.symbol}")
        old = book.inst
        changes = {f: getattr(c, f) for f in _UPDATABLE if getattr(c, f) is not None}
        if not changes:
            return _rejected(seq, ts, _INVALID, f"instrument {c.symbol}: nothing to change")
        raw: dict[str, object] = {"symbol": old.symbol}
        raw.update((f, getattr(old, f)) for f in CONFIG_FIELDS)
        raw.update(changes)
        try:
            inst = derive_instrument(raw, self.config.assets)
        except ConfigError as exc:
            return _rejected(seq, ts, _INVALID, str(exc))
        moves = self._stop_hold_moves(book, old, inst)
        if moves is None:
            return _rejected(seq, ts, _BALANCE, f"instrument {c.symbol}: a waiting stop "
                             "order's account cannot cover its hold under the new band")
        for bal, extra in moves:
            bal.available -= extra
            bal.held += extra
        book.inst = inst
        self.config.instruments[inst.symbol] = inst
        self.listing_changes += 1
        return [InstrumentUpdated(seq=seq, ts=ts, instrument=inst)]

    def _stop_hold_moves(
        self, book: Book, old: Instrument, new: Instrument
    ) -> list[tuple[Balance, int]] | None:
        """What the new band adds to (or takes from) each account's stop_market buy holds,
        in account-id order; None when an account cannot cover its increase."""
        if new.price_band_pct == old.price_band_pct:
            return []
        extra: dict[int, int] = {}
        qtl = old.quote_units_per_tick_lot
        for _, _, o in book.stop_buys:
            if o.price is not None:
                continue  # a stop_limit holds at its own limit price
            stop = o.stop_price
            assert stop is not None
            leaves = o.qty - o.cum_qty
            before = stop * (100 + old.price_band_pct) // 100 * leaves * qtl
            after = stop * (100 + new.price_band_pct) // 100 * leaves * qtl
            extra[o.account_id] = extra.get(o.account_id, 0) + after - before
        moves: list[tuple[Balance, int]] = []
        for account_id in sorted(extra):
            bal = self._accounts[account_id].balances[old.quote]
            if extra[account_id] > bal.available:
                return None
            moves.append((bal, extra[account_id]))
        return moves
