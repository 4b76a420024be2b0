"""What the matcher needs from an engine (exchange.engine.core.Engine provides it).

Typed as protocols so that the matcher's plumbing can be tested against small stand-ins.
"""

from __future__ import annotations

from typing import Any, Protocol

from exchange.model.commands import Command
from exchange.model.events import Event
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import Query, QueryResult


class EngineLike(Protocol):
    @property
    def last_seq(self) -> int: ...

    @property
    def config(self) -> ExchangeConfig:
        """The live assets and instruments (changed only by journaled listing commands)."""
        ...

    @property
    def listing_changes(self) -> int:
        """Grows whenever a command changed `config`."""
        ...

    def apply(self, command: Command, seq: int, ts: int) -> list[Event]: ...

    def answer(self, query: Query) -> QueryResult: ...

    def snapshot(self) -> bytes: ...

    def state_hash(self) -> str: ...

    def validate(self) -> None: ...


class EngineFactory(Protocol):
    """A fresh engine from the config, or one restored from snapshot bytes."""

    def new(self, config: ExchangeConfig) -> EngineLike: ...

    def restore(self, config: ExchangeConfig, data: bytes) -> EngineLike: ...


class ClassFactory:
    """Adapts an engine class (`Engine(config)`, `Engine.restore(config, data)`)."""

    def __init__(self, cls: Any) -> None:
        self._cls = cls

    def new(self, config: ExchangeConfig) -> EngineLike:
        engine: EngineLike = self._cls(config)
        return engine

    def restore(self, config: ExchangeConfig, data: bytes) -> EngineLike:
        engine: EngineLike = self._cls.restore(config, data)
        return engine


def default_factory() -> EngineFactory:
    """The real engine behind the account report log (imported lazily so tools that never
    apply commands stay light)."""
    from exchange.engine.core import Engine
    from exchange.matcher.report_log import ReportingFactory

    return ReportingFactory(ClassFactory(Engine))
