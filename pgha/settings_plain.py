"""Settings as plain JSON-able data, and back: for `pgha config show` and the agent's loader.

`plain` turns a settings object into dicts, lists, strings and numbers (paths as strings,
secrets masked unless asked for). `from_plain` rebuilds the object from such data without
pydantic: it trusts the data to have been validated already, by `pgha.settings_load`, and
only restores the types (nested sections, paths, secrets) that JSON does not carry.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pgha.settings_base import SECRET_MASK, Secret

T = TypeVar("T")


def plain(value: Any, *, reveal_secrets: bool = False) -> Any:
    """`value` (a settings section or anything in one) as JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: plain(getattr(value, item.name), reveal_secrets=reveal_secrets)
            for item in dataclasses.fields(value)
        }
    if isinstance(value, Secret):
        return value.get_secret_value() if reveal_secrets else SECRET_MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: plain(item, reveal_secrets=reveal_secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item, reveal_secrets=reveal_secrets) for item in value]
    return value


def from_plain(cls: type[T], data: dict[str, Any]) -> T:
    """The settings section `cls` from what `plain(..., reveal_secrets=True)` made of one."""
    hints = typing.get_type_hints(cls)
    values = {
        item.name: _restore(hints[item.name], data[item.name])
        for item in dataclasses.fields(cls)  # type: ignore[arg-type]
        if item.name in data
    }
    return cls(**values)


def _restore(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, (types.UnionType,)) or typing.get_origin(kind) is typing.Union:
        # Settings unions are "X | None" or scalars only; restore as the one non-None arm.
        arms = [arm for arm in typing.get_args(kind) if arm is not type(None)]
        return _restore(arms[0], value) if len(arms) == 1 else value
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return from_plain(kind, value)
    if kind is Path:
        return Path(value)
    if kind is Secret:
        return Secret(value)
    if typing.get_origin(kind) is list:
        return list(value)
    if typing.get_origin(kind) is dict:
        return dict(value)
    return value
