"""SQL against a Postgres server with a deadline the *client* enforces.

statement_timeout and cancel requests do nothing against a frozen (SIGSTOPped) postmaster
and its backends: a cancel request goes through the postmaster, and a stopped backend never
reads it (traps 22). So each call runs on its own worker thread and the caller waits at
most `timeout_seconds`. When the deadline passes, the caller gets `PostgresUnreachable`
and the socket is shut down under the worker's feet, which makes its blocked read return
at once; the worker then closes the connection and ends. Connection set-up is bounded on
the client side as well, as psycopg.connect bounds it (`connect_timeout`).

A fresh connection starts from a conninfo string built once per timeout: psycopg.connect
parses its keywords and rebuilds that string on every call, which costs about as much CPU
as the connection itself (see `connect_without_lookup`).

A call connects afresh unless it asks to `reuse` the session's idle connection, which only
work that leaves no session state behind should do (SET LOCAL inside a transaction is fine,
a plain SET is not): the agent's per-cycle probe and slot upkeep, and the heartbeat the
cycle writes itself (the commit probe connects afresh on purpose). That saves a
connection set-up and a backend fork per call. Every call, reuse or not, runs on a worker
thread that waits for the next one instead of a new thread each time (a worker whose call
overran its deadline is retired, never reused). One idle connection is kept per timeout
(its statement_timeout is set when it connects), only after a call that succeeded and left
no transaction open, and it is dropped, before anything is sent on it, when its socket has
something to read: the server closed it (a restart, a termination) or reported a change (a
promotion).

The local session connects as the superuser over the unix socket (never as an application
user, so exhausted application connection slots are not mistaken for a dead server).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import queue
import select
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import generators, waiting
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

from pgha.adapters.postgres_state import Upstream
from pgha.errors import PostgresError, PostgresUnreachable
from pgha.settings import Credentials, PostgresSettings

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]
Work = Callable[[Connection], T]
APPLICATION_NAME = "pgha"
_WAIT_INTERVAL_SECONDS = 0.1
"""How often a connection attempt wakes up while the server has not answered yet, as in
psycopg.connect (a zero interval would spin until the server answers)."""


class _Worker:
    """A daemon thread that runs calls one after another until it is retired."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True, name="pgha-sql").start()

    def submit(self, call: Callable[[], None]) -> None:
        self._calls.put(call)

    def retire(self) -> None:
        """End the thread once the call under way, if any, has returned."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            call()


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

    def __init__(self, where: str, *, server_timeout: bool = True, **conninfo: Any) -> None:
        """`server_timeout` False leaves statement_timeout as the server and the role set
        it (to read it, say); the deadline of each call still holds on our side."""
        self.where = where
        self._conninfo = _with_address(conninfo)
        self._looks_up_host = not _needs_no_lookup(conninfo.get("host"))
        self._server_timeout = server_timeout
        self._conninfo_strings: dict[tuple[int, int], str] = {}
        """The conninfo string of each (statement_timeout ms, connect_timeout s)."""
        self._idle_lock = threading.Lock()
        self._idle: dict[int, Connection] = {}
        """Idle connections kept for `reuse` calls, by their statement_timeout (ms)."""
        self._worker: _Worker | None = None
        """The thread that waits for the next call."""

    def run(self, work: Work[T], *, timeout_seconds: float, what: str, reuse: bool = False) -> T:
        """Connect, call `work(connection)` in autocommit mode, close; return its result.
        With `reuse`, take the idle connection of an earlier `reuse` call with the same
        timeout if it is still sound, and keep this one for the next instead of closing it.

        Raises PostgresUnreachable when the server does not answer in time or cannot be
        connected to, PostgresError when it answers with an error.
        """
        attempt: _Attempt[T] = _Attempt()
        call = partial(self._work, attempt, work, timeout_seconds, reuse)
        worker = self._take_worker()
        worker.submit(call)
        if not attempt.done.wait(timeout_seconds):
            worker.retire()  # it may stay stuck until the abandoned socket breaks
            self._abandon(attempt)
            raise PostgresUnreachable(
                f"cannot {what}: Postgres ({self.where}) did not answer within "
                f"{timeout_seconds:g} s; the connection was abandoned"
            )
        self._keep_worker(worker)
        if attempt.error is not None:
            raise self._translate(attempt, what) from None
        return cast(T, attempt.result)  # set whenever error is None

    def close(self) -> None:
        """Close the idle connections kept for `reuse` calls and end the idle worker."""
        with self._idle_lock:
            idle, self._idle = list(self._idle.values()), {}
            worker, self._worker = self._worker, None
        for connection in idle:
            connection.close()
        if worker is not None:
            worker.retire()

    def _take_worker(self) -> _Worker:
        with self._idle_lock:
            worker, self._worker = self._worker, None
        if worker is None:
            worker = _Worker()
            # A session dropped without close() must not leave its thread waiting forever.
            weakref.finalize(self, worker.retire)
        return worker

    def _keep_worker(self, worker: _Worker) -> None:
        with self._idle_lock:
            if self._worker is None:
                self._worker = worker
                return
        worker.retire()  # another call's worker already waits: one is enough

    def _work(
        self, attempt: _Attempt[T], work: Work[T], timeout_seconds: float, reuse: bool
    ) -> None:
        statement_ms = max(1, int(timeout_seconds * 1000))
        try:
            connection = self._take_idle(statement_ms) if reuse else None
            if connection is None:
                connection = self._connect(statement_ms, timeout_seconds)
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
                if not (kept and self._keep_idle(statement_ms, connection)):
                    connection.close()
            attempt.done.set()

    def _connect(self, statement_ms: int, timeout_seconds: float) -> Connection:
        """A new connection in autocommit mode, as psycopg.connect would open it."""
        # libpq counts whole seconds and treats less than 2 as 2.
        connect_seconds = max(2, math.ceil(timeout_seconds))
        conninfo = self._conninfo_string(statement_ms, connect_seconds)
        if self._looks_up_host:
            # psycopg looks a host name up itself, outside libpq (whose own lookup would
            # hold the GIL, and so every thread of the agent, while DNS does not answer),
            # and tries each address it gets.
            return psycopg.connect(conninfo, autocommit=True)
        return connect_without_lookup(conninfo, timeout_seconds=connect_seconds)

    def _conninfo_string(self, statement_ms: int, connect_seconds: int) -> str:
        key = (statement_ms, connect_seconds)
        conninfo = self._conninfo_strings.get(key)
        if conninfo is None:
            # An empty `options` still keeps PGOPTIONS from the environment out.
            options = f"-c statement_timeout={statement_ms}" if self._server_timeout else ""
            conninfo = make_conninfo(
                "", connect_timeout=connect_seconds, options=options, **self._conninfo
            )
            self._conninfo_strings[key] = conninfo
        return conninfo

    def _take_idle(self, statement_ms: int) -> Connection | None:
        with self._idle_lock:
            idle = self._idle.pop(statement_ms, None)
        if idle is not None and not _quiet(idle):
            idle.close()
            return None
        return idle

    def _keep_idle(self, statement_ms: int, connection: Connection) -> bool:
        """Keep `connection` for the next `reuse` call; False if it must be closed instead."""
        if connection.broken or connection.info.transaction_status != TransactionStatus.IDLE:
            return False
        with self._idle_lock:
            if statement_ms in self._idle:
                return False
            self._idle[statement_ms] = connection
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


def connect_without_lookup(conninfo: str, *, timeout_seconds: float) -> Connection:
    """psycopg.connect(conninfo, autocommit=True) to one host that needs no name lookup
    (a socket directory, an IP address), without the parsing of `conninfo` into keywords
    and back that psycopg.connect does on every call.

    The same non-blocking libpq calls (never PGconn.connect, whose blocking libpq call
    would hold the GIL, and so every thread of the agent, for the whole connect timeout),
    the same client-side timeout and the same errors: OperationalError with the server's
    message when the attempt fails, ConnectionTimeout when the timeout passes first.
    """
    attempt = generators.connect(conninfo)
    try:
        pgconn = waiting.wait_conn(
            attempt, interval=_WAIT_INTERVAL_SECONDS, timeout=timeout_seconds
        )
    except pg_errors._WaitTimeout:  # wait_conn's own, for its caller to make public
        raise pg_errors.ConnectionTimeout("connection timeout expired") from None
    finally:
        attempt.close()  # a connection still being set up is closed now, not when collected
    connection: Connection = psycopg.Connection(pgconn)
    connection.autocommit = True
    return connection


def _needs_no_lookup(host: object) -> bool:
    """A unix socket directory or an IP address: nothing for DNS to resolve."""
    if not isinstance(host, str) or not host:
        return False
    return host.startswith("/") or _is_ip_address(host)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_address(conninfo: dict[str, Any]) -> dict[str, Any]:
    """An IP address given as `host` is also the `hostaddr`, as psycopg.connect passes it,
    so that libpq does not look it up either."""
    host = conninfo.get("host")
    if isinstance(host, str) and _is_ip_address(host) and "hostaddr" not in conninfo:
        return {**conninfo, "hostaddr": host}
    return conninfo


def _quiet(connection: Connection) -> bool:
    """An idle connection the server has said nothing on since: nothing to read, not closed."""
    if connection.closed or connection.broken:
        return False
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def user_conninfo(
    user: Credentials, host: str, port: int, application_name: str = APPLICATION_NAME
) -> dict[str, Any]:
    """Connection keywords for `user` to the postgres database of `host`:`port`."""
    conninfo: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": user.username,
        "dbname": "postgres",
        "application_name": application_name,
    }
    password = user.secret()
    if password is not None:
        # Passed in memory only; libpq sends it only if the server asks for one.
        conninfo["password"] = password
    return conninfo


def _superuser_conninfo(settings: PostgresSettings, host: str, port: int) -> dict[str, Any]:
    return user_conninfo(settings.superuser, host, port)


def local_session(settings: PostgresSettings) -> PgSession:
    """The superuser over the unix socket in `socket_dir`."""
    conninfo = _superuser_conninfo(settings, str(settings.socket_dir), settings.port)
    where = f"data dir {settings.data_dir}, port {settings.port}"
    return PgSession(where, **conninfo)


def remote_session(settings: PostgresSettings, upstream: Upstream) -> PgSession:
    """The superuser of another member, over TCP with its password (for pg_rewind checks)."""
    conninfo = _superuser_conninfo(settings, upstream.host, upstream.port)
    return PgSession(f"{upstream.host}:{upstream.port}", **conninfo)
