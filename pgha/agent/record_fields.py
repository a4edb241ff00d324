"""Reading one field of a JSON record from etcd: the type checks every parser shares.

A field of the wrong type, a non-finite number or an oversized text makes the record
unusable (`BadRecord`), so a parser reports it instead of acting on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pgha.adapters.store import MAX_TEXT, Unparsable, Value
from pgha.core.model import Lsn, parse_lsn


class BadRecord(ValueError):
    """A record whose shape is not what pgha writes."""


def data_of(value: Value | None) -> Any:
    if value is None:
        return None
    if isinstance(value, Unparsable):
        raise BadRecord(value.what())
    return value.data


def object_of(value: Value | None) -> dict[str, Any] | None:
    """A key holding a JSON object, as a dict; None when the key (or its value) is missing."""
    data = data_of(value)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BadRecord("expected a JSON object")
    return data


def field_of(
    data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any
) -> Any:
    value = data.get(name, default)
    if value is None or value is default:
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # bool is an int to isinstance
        raise BadRecord(f"{name} has the wrong type (bool)")
    if not isinstance(value, kinds):
        raise BadRecord(f"{name} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRecord(f"{name} must be a finite number, got {value!r}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise BadRecord(f"{name} is {len(value)} characters long, more than {MAX_TEXT}")
    return value


def lsn_field(data: Mapping[str, Any], name: str) -> Lsn | None:
    text = field_of(data, name, str, None)
    if text is None:
        return None
    try:
        return parse_lsn(text)
    except ValueError as exc:
        raise BadRecord(f"{name}: {exc}") from None
