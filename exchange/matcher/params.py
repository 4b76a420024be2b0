"""The instrument parameters a data directory's state was written with, and the check of a config
against them.

Prices and sizes are stored as integers (ticks, lots, asset units); only the parameters they
were written with give them their meaning. A BTC-USD bid at 5,000,000 ticks is 50000.00 with a
0.01 tick and 500000.00 with a 0.10 tick, while the funds held for it do not change. And
replaying the journal with other fees or another price band would not rebuild the state that
was acknowledged. So the first start on a new directory records every asset and instrument
parameter in `DATA_DIR/instruments.json` (written and fsynced before the journal opens), and
every later start compares the config with it: any difference stops the start with one line
naming the symbol, the field, the recorded and the new value.

The record is the *initial* set and is never rewritten: the config file states where the
exchange started. Assets and instruments listed later, and new live parameters (band, fees,
limits, reference price), are journaled commands (ListAsset, ListInstrument,
UpdateInstrument) whose result lives in the engine's state and snapshots, so a restart with
the original config is never refused because of them; a config edited to make such a change
itself is refused like any other difference (the admin commands make it, live).

A directory written before this record existed gets it on its next start, from the config
it is started with (there is nothing else to compare with).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from exchange.model.instruments import CONFIG_FIELDS as _CONFIG_FIELDS
from exchange.model.instruments import ExchangeConfig

RECORD = "instruments.json"


class ParamsChanged(RuntimeError):
    """The config disagrees with the recorded parameters; the message is one line."""


class _Recorded(msgspec.Struct, frozen=True, kw_only=True):
    assets: dict[str, int]  # name -> decimals
    instruments: dict[str, dict[str, object]]  # symbol -> the config's fields, as written




def _of(config: ExchangeConfig) -> _Recorded:
    return _Recorded(
        assets={name: asset.decimals for name, asset in config.assets.items()},
        instruments={
            symbol: {f: getattr(inst, f) for f in _CONFIG_FIELDS}
            for symbol, inst in config.instruments.items()
        },
    )


def differences(recorded: _Recorded, config: ExchangeConfig) -> list[str]:
    """What `config` changes of the recorded parameters, one phrase each, in a fixed order."""
    now = _of(config)
    out: list[str] = []
    for name, decimals in recorded.assets.items():
        if name not in now.assets:
            out.append(f"drops asset {name}")
        elif now.assets[name] != decimals:
            out.append(f"changes {name} decimals from {decimals} to {now.assets[name]}")
    out += [f"adds asset {name}" for name in now.assets if name not in recorded.assets]
    for symbol, fields in recorded.instruments.items():
        if symbol not in now.instruments:
            out.append(f"drops instrument {symbol}")
            continue
        for field in _CONFIG_FIELDS:
            old, new = fields.get(field), now.instruments[symbol][field]
            if old != new:
                out.append(f"changes {symbol} {field} from {old} to {new}")
    out += [f"adds instrument {s}" for s in now.instruments if s not in recorded.instruments]
    return out


def check_or_record(data_dir: Path, config: ExchangeConfig) -> None:
    """Record the config's parameters on first use; afterwards refuse any change to them."""
    path = data_dir / RECORD
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        _write(path, msgspec.json.format(msgspec.json.encode(_of(config))) + b"\n")
        return
    try:
        recorded = msgspec.json.decode(raw, type=_Recorded)
    except msgspec.DecodeError as exc:
        raise ParamsChanged(f"{path} is unreadable: {exc}") from None
    changes = differences(recorded, config)
    if changes:
        shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
        raise ParamsChanged(
            f"the config {shown}, but the state in {data_dir} was written with the values "
            f"recorded in {path}; start with those (new instruments and live parameters: "
            f"exchange admin list-instrument / update-instrument)")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
