"""A name -> entry mapping for every extension point: unknown names fail with the valid ones.

An extension point (video and audio encoders, heads, split formats, localization benchmark
formats) keeps one :class:`Registry`; its entries register themselves where they are defined
(``@REGISTRY.add("name")``), so a new entry is one definition plus, at most, one import line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from avlearn.config import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-mostly name -> builder mapping whose lookups fail with the list of valid names."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})

    def register(self, name: str, value: T) -> T:
        """Add ``name``; registering a taken name is an error (no silent overrides)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = value
        return value

    def add(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`register`: ``@FORMATS.add("name")`` above the entry's definition."""
        def add(value: T) -> T:
            return self.register(name, value)
        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} '{name}'.{self.choices(name)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def choices(self, name: str) -> str:
        """`` Did you mean 'x'? Valid <kind> names: a, b, c`` for a name that is not registered."""
        valid = sorted(self._entries)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{hint} Valid {self.kind} names: {', '.join(valid)}"

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
