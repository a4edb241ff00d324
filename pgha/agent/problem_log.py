"""Rejected etcd keys: collected per key while a snapshot is parsed, logged once per change.

The agent reads the whole cluster every cycle, so a key holding garbage would otherwise be
reported every cycle, burying everything else. `ProblemLog` logs a rejection when it first
appears or its description changes, and once more when the key is readable again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping


def describe(key: str, what: str) -> str:
    return f"key {key!r}: {what}"


class Problems:
    """The rejections of one snapshot by key; `on(key)` is the list a parser appends to."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[str]] = {}

    def on(self, key: str) -> list[str]:
        return self._by_key.setdefault(key, [])

    def by_key(self) -> dict[str, str]:
        return {key: "; ".join(texts) for key, texts in self._by_key.items() if texts}


class ProblemLog:
    """Remembers what was logged about each key; `update` logs only the differences."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._shown: dict[str, str] = {}

    def update(self, unreadable: Mapping[str, str]) -> None:
        """Log the rejections of this snapshot that are new or changed, and the keys that
        were rejected before and are not any more."""
        for key, what in sorted(unreadable.items()):
            if self._shown.get(key) != what:
                self._log.warning("cluster store: %s", describe(key, what))
        for key in sorted(self._shown.keys() - unreadable.keys()):
            self._log.info("cluster store: key %r is readable again", key)
        self._shown = dict(unreadable)
