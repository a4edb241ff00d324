"""What every settings section shares: the strict section base and address checks."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


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


Address = Annotated[str, AfterValidator(_check_address)]
EtcdEndpoint = Annotated[str, AfterValidator(_check_endpoint)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
