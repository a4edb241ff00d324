"""What every settings section shares: the frozen section, secrets, and the checks a file gets.

The sections are plain frozen dataclasses, so the agent holds its settings without
importing pydantic, pydantic-settings or PyYAML (about 11 MiB of resident memory for its
whole life). `pgha.settings_load` validates a file into these same classes: pydantic reads
their annotations, and the markers below (`Check`, `Limits`) tell it what to enforce. The
markers import pydantic's core only when pydantic asks for them, which the agent never does.
Constructing a section directly, as code and tests do, checks only what `__post_init__`
checks: the consistency between fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

SECRET_MASK = "**********"  # noqa: S105 - the mask, not a password


class Section:
    """Base of every settings section: pydantic refuses keys a section does not have."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}


class Check:
    """A check pydantic runs on a field's value when a file is loaded (`before`: on the raw
    input, to normalise it; otherwise after the type is validated); it raises ValueError
    with the reason."""

    def __init__(self, check: Callable[[Any], Any], *, before: bool = False) -> None:
        self.check = check
        self.before = before

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema  # noqa: PLC0415 - only while validating a file

        if self.before:
            return core_schema.no_info_before_validator_function(self.check, handler(source))
        return core_schema.no_info_after_validator_function(self.check, handler(source))


class Limits:
    """Bounds pydantic enforces when a file is loaded, in its own words: `gt`, `ge`,
    `min_length`, `max_length`, `pattern`, `allow_inf_nan` (pydantic-core's schema keys)."""

    def __init__(self, **bounds: Any) -> None:
        self.bounds = bounds

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema: Any = {**handler(source), **self.bounds}
        return schema  # type: ignore[no-any-return]


class Secret:
    """A password or token: its repr and every masked dump show asterisks, never the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({SECRET_MASK!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema  # noqa: PLC0415 - only while validating a file

        # A Secret given where one is expected passes as its value, then becomes one again.
        return core_schema.no_info_before_validator_function(
            lambda value: value.get_secret_value() if isinstance(value, Secret) else value,
            core_schema.no_info_after_validator_function(cls, core_schema.str_schema()),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda _secret: SECRET_MASK
            ),
        )


def split_address(address: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:5432`) into its parts; raises ValueError when malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return host.strip("[]"), port


def _check_address(address: str) -> str:
    split_address(address)
    return address


def _check_endpoint(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"expected http://host:port or https://host:port, got {url!r}")
    _check_address(rest.rstrip("/"))
    return url.rstrip("/")


NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
"""Cluster, namespace and node names: they become etcd keys, slot names and hostnames."""

Address = Annotated[str, Check(_check_address)]
EtcdEndpoint = Annotated[str, Check(_check_endpoint)]
Name = Annotated[str, Limits(pattern=NAME_PATTERN.pattern)]
