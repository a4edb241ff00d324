"""libpq connection strings for a cluster: every member's address, a session target, a timeout.

A multi-host DSN lets libpq find the primary wherever it is: it tries the hosts in order and
keeps the first whose session matches `target_session_attrs`. `connect_timeout` is always
set, because without it a black-holed host costs the kernel's TCP timeout (about two
minutes) before the next one is tried (traps 22). No password ever goes in: clients take it
from a passfile or the environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class SessionTarget(StrEnum):
    """libpq's target_session_attrs values (PostgreSQL 14 and later clients)."""

    READ_WRITE = "read-write"
    READ_ONLY = "read-only"
    PREFER_STANDBY = "prefer-standby"
    PRIMARY = "primary"
    STANDBY = "standby"
    ANY = "any"


SESSION_TARGETS = tuple(target.value for target in SessionTarget)

DEFAULT_CONNECT_TIMEOUT_SECONDS = 2


def quote(value: str) -> str:
    """A libpq conninfo value, single-quoted when it holds a space, a quote or a backslash."""
    if value and not any(char in value for char in " '\\\t\r\n"):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def multi_host_dsn(
    addresses: Sequence[tuple[str, int]],
    *,
    target: str = "read-write",
    connect_timeout_seconds: int = DEFAULT_CONNECT_TIMEOUT_SECONDS,
    dbname: str | None = None,
    user: str | None = None,
) -> str:
    """`host=a,b port=1,2 [dbname=.. user=..] target_session_attrs=.. connect_timeout=..`.

    Raises ValueError for an empty address list, an unknown target or a timeout below 1 s
    (libpq treats 0 as "wait forever" and raises 1 to 2).
    """
    if not addresses:
        raise ValueError("no member has published an address to connect to")
    if target not in SESSION_TARGETS:
        raise ValueError(f"unknown session target {target!r}; use one of {SESSION_TARGETS}")
    if connect_timeout_seconds < 1:
        raise ValueError(f"connect_timeout must be at least 1 s, got {connect_timeout_seconds}")
    for host, _port in addresses:
        if not host or "," in host:
            raise ValueError(f"cannot put host {host!r} in a multi-host connection string")
    parts = [
        f"host={quote(','.join(host for host, _ in addresses))}",
        f"port={quote(','.join(str(port) for _, port in addresses))}",
    ]
    if dbname is not None:
        parts.append(f"dbname={quote(dbname)}")
    if user is not None:
        parts.append(f"user={quote(user)}")
    parts.append(f"target_session_attrs={target}")
    parts.append(f"connect_timeout={connect_timeout_seconds}")
    return " ".join(parts)
