"""SQL against a Postgres server with a deadline the *client* enforces.

statement_timeout and cancel requests do nothing against a frozen (SIGSTOPped) postmaster
and its backends: a cancel request goes through the postmaster, and a stopped backend never
reads it (traps 22). So each call runs on its own worker thread and the caller waits at
most `timeout_seconds`. When the deadline passes, the caller gets `PostgresUnreachable`
and the socket is shut down under the worker's feet, which makes its blocked read return
at once; the worker then closes the connection and ends. Connection set-up is bounded by
`connect_timeout`, which psycopg enforces on the client side as well.

A call connects afresh unless it asks to `reuse` the session's idle connection, which only
read-only work that sets no session state should do (the agent's per-cycle probe): that
saves a connection set-up and a backend fork per cycle. The idle connection is kept only
after a call that succeeded and left no transaction open, and it is dropped, before
anything is sent on it, when its socket has something to read: the server closed it (a
restart, a termination) or reported a change (a promotion).

The local session connects as the superuser over the unix socket (never as an application
user, so exhausted application connection slots are not mistaken for a dead server).
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from pgha.adapters.postgres_state import Upstream
from pgha.errors import PostgresError, PostgresUnreachable
from pgha.settings import PostgresSettings

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]
Work = Callable[[Connection], T]
APPLICATION_NAME = "pgha"


@dataclass
class _Attempt(Generic[T]):
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    connection: Connection | None = None
    abandoned: bool = False
    connected: bool = False
    result: T | None = None
    error: BaseException | None = None


class PgSession:
    """Runs one unit of work on a connection of its own, returning within the deadline."""

    def __init__(self, where: str, **conninfo: Any) -> None:
        self.where = where
        self._conninfo = conninfo
        self._idle_lock = threading.Lock()
        self._idle: Connection | None = None

    def run(self, work: Work[T], *, timeout_seconds: float, what: str, reuse: bool = False) -> T:
        """Connect, call `work(connection)` in autocommit mode, close; return its result.
        With `reuse`, take the idle connection of an earlier `reuse` call if it is still
        sound, and keep this one for the next instead of closing it.

        Raises PostgresUnreachable when the server does not answer in time or cannot be
        connected to, PostgresError when it answers with an error.
        """
        attempt: _Attempt[T] = _Attempt()
        worker = threading.Thread(
            target=self._work,
            args=(attempt, work, timeout_seconds, reuse),
            daemon=True,
            name=f"pgha-sql {what}",
        )
        worker.start()
        if not attempt.done.wait(timeout_seconds):
            self._abandon(attempt)
            raise PostgresUnreachable(
                f"cannot {what}: Postgres ({self.where}) did not answer within "
                f"{timeout_seconds:g} s; the connection was abandoned"
            )
        if attempt.error is not None:
            raise self._translate(attempt, what) from None
        return cast(T, attempt.result)  # set whenever error is None

    def close(self) -> None:
        """Close the idle connection kept for `reuse` calls, if any."""
        with self._idle_lock:
            idle, self._idle = self._idle, None
        if idle is not None:
            idle.close()

    def _work(
        self, attempt: _Attempt[T], work: Work[T], timeout_seconds: float, reuse: bool
    ) -> None:
        try:
            connection = self._take_idle() if reuse else None
            if connection is None:
                connection = psycopg.connect(
                    autocommit=True,
                    # libpq counts whole seconds and treats less than 2 as 2.
                    connect_timeout=max(2, math.ceil(timeout_seconds)),
                    # Set once per connection: a reused one keeps its first call's timeout.
                    options=f"-c statement_timeout={max(1, int(timeout_seconds * 1000))}",
                    **self._conninfo,
                )
        except BaseException as exc:  # handed to the caller's thread, never lost
            attempt.error = exc
            attempt.done.set()
            return
        with attempt.lock:
            attempt.connected = True
            if attempt.abandoned:
                connection.close()
                attempt.done.set()
                return
            attempt.connection = connection
        try:
            attempt.result = work(connection)
        except BaseException as exc:
            attempt.error = exc
        finally:
            # Under the lock, so that _abandon never shuts down a descriptor that this
            # close has released and the process has already reused for something else.
            with attempt.lock:
                attempt.connection = None
                kept = reuse and not attempt.abandoned and attempt.error is None
                if not (kept and self._keep_idle(connection)):
                    connection.close()
            attempt.done.set()

    def _take_idle(self) -> Connection | None:
        with self._idle_lock:
            idle, self._idle = self._idle, None
        if idle is not None and not _quiet(idle):
            idle.close()
            return None
        return idle

    def _keep_idle(self, connection: Connection) -> bool:
        """Keep `connection` for the next `reuse` call; False if it must be closed instead."""
        if connection.broken or connection.info.transaction_status != TransactionStatus.IDLE:
            return False
        with self._idle_lock:
            if self._idle is not None:
                return False
            self._idle = connection
        return True

    @staticmethod
    def _abandon(attempt: _Attempt[Any]) -> None:
        with attempt.lock:
            attempt.abandoned = True
            connection = attempt.connection
            if connection is None or connection.closed:
                return
            # shutdown() acts on the socket, not on our duplicate descriptor: the worker's
            # blocked read returns at once and the worker closes the connection itself.
            with (
                contextlib.suppress(OSError),
                socket.socket(fileno=os.dup(connection.fileno())) as duplicate,
            ):
                duplicate.shutdown(socket.SHUT_RDWR)

    def _translate(self, attempt: _Attempt[Any], what: str) -> PostgresError:
        error = attempt.error
        # Unreachable: never connected, the connection broke (no SQLSTATE: it is the
        # client that noticed), or the server's own statement_timeout fired.
        lost = isinstance(error, psycopg.OperationalError) and error.sqlstate is None
        if not attempt.connected or lost or isinstance(error, pg_errors.QueryCanceled):
            text = str(error).strip() or type(error).__name__
            return PostgresUnreachable(f"cannot {what}: Postgres ({self.where}): {text}")
        if isinstance(error, psycopg.Error):
            code = f" [{error.sqlstate}]" if error.sqlstate else ""
            return PostgresError(f"cannot {what} ({self.where}){code}: {str(error).strip()}")
        if isinstance(error, PostgresError):
            return error
        return PostgresError(f"cannot {what} ({self.where}): {error!r}")


def _quiet(connection: Connection) -> bool:
    """An idle connection the server has said nothing on since: nothing to read, not closed."""
    if connection.closed or connection.broken:
        return False
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _superuser_conninfo(settings: PostgresSettings, host: str, port: int) -> dict[str, Any]:
    conninfo: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": settings.superuser.username,
        "dbname": "postgres",
        "application_name": APPLICATION_NAME,
    }
    password = settings.superuser.secret()
    if password is not None:
        # Passed in memory only; libpq sends it only if the server asks for one.
        conninfo["password"] = password
    return conninfo


def local_session(settings: PostgresSettings) -> PgSession:
    """The superuser over the unix socket in `socket_dir`."""
    conninfo = _superuser_conninfo(settings, str(settings.socket_dir), settings.port)
    where = f"data dir {settings.data_dir}, port {settings.port}"
    return PgSession(where, **conninfo)


def remote_session(settings: PostgresSettings, upstream: Upstream) -> PgSession:
    """The superuser of another member, over TCP with its password (for pg_rewind checks)."""
    conninfo = _superuser_conninfo(settings, upstream.host, upstream.port)
    return PgSession(f"{upstream.host}:{upstream.port}", **conninfo)
