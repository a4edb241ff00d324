"""`reuse` calls share one backend and one worker thread, and never at the cost of a call:
a restart, a termination or a call that overran its deadline only costs a fresh connection.
A fresh connection, which skips psycopg.connect's parsing of the connection keywords, still
fails as psycopg.connect does: in time, with the server's own words."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgha.adapters.postgres_session import (
    Connection,
    PgSession,
    connect_without_lookup,
    local_session,
    remote_session,
)
from pgha.adapters.postgres_state import Upstream
from pgha.errors import PostgresUnreachable
from pgha.settings import Credentials
from pgha.settings_base import Secret
from tests.fixtures.postgres import PgFactory, freeze, thaw, wait_until


def backend_pid(connection: Connection) -> int:
    row = connection.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def threads_named(name: str) -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == name)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_reuse_calls_share_a_backend_and_recover_from_a_restart(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("reuse")
    session = local_session(node.settings)
    try:
        first = session.run(backend_pid, timeout_seconds=3, what="look", reuse=True)
        assert session.run(backend_pid, timeout_seconds=3, what="look", reuse=True) == first
        # Other calls, and calls with another timeout, connect afresh.
        assert session.run(backend_pid, timeout_seconds=3, what="look") != first
        assert session.run(backend_pid, timeout_seconds=5, what="look", reuse=True) != first

        node.control.stop(mode="fast")
        node.control.start_primary()
        after_restart = session.run(backend_pid, timeout_seconds=3, what="look", reuse=True)
        assert after_restart != first

        node.sql("SELECT pg_terminate_backend(%s)", (after_restart,))
        time.sleep(0.2)  # the termination message reaches our idle socket
        assert session.run(backend_pid, timeout_seconds=3, what="look", reuse=True) not in (
            first,
            after_restart,
        )
    finally:
        session.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_reuse_call_that_overran_its_deadline_does_not_hold_up_the_next(
    pg_factory: PgFactory,
) -> None:
    node = pg_factory.primary("overrun")
    workers_before = threads_named("pgha-sql")
    release = threading.Event()
    stuck_call_returned = threading.Event()
    session = local_session(node.settings)
    try:

        def stuck(connection: Connection) -> None:
            release.wait(30)  # stuck on the client side: only the caller's deadline ends it
            stuck_call_returned.set()

        with pytest.raises(PostgresUnreachable, match="did not answer"):
            session.run(stuck, timeout_seconds=1, what="sleep", reuse=True)
        assert session.run(backend_pid, timeout_seconds=5, what="look", reuse=True) > 0
        assert not stuck_call_returned.is_set(), "the next call ran while the stuck one still was"
    finally:
        release.set()
        session.close()
    deadline = time.monotonic() + 5
    while threads_named("pgha-sql") > workers_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threads_named("pgha-sql") == workers_before, "close() leaves no worker waiting"


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_fresh_connection_to_a_frozen_server_gives_up_in_time(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("frozen-connect")
    session = local_session(node.settings)
    workers_before = threads_named("pgha-sql")
    pids = freeze(node)
    try:
        with pytest.raises(PostgresUnreachable, match="did not answer within 1 s"):
            session.run(backend_pid, timeout_seconds=1, what="look")
        # The abandoned worker's own connect timeout (2 s, libpq's least) ends its attempt
        # while the server is still frozen: no thread is left waiting for it.
        wait_until(
            lambda: threads_named("pgha-sql") == workers_before,
            what="the abandoned connection attempt timed out",
            timeout=5,
        )
        # Beneath the session: psycopg.connect's error, and nothing left open.
        conninfo = make_conninfo(
            host=str(node.settings.socket_dir),
            port=node.port,
            user=node.settings.superuser.username,
            dbname="postgres",
        )
        descriptors = open_descriptors()
        with pytest.raises(psycopg.errors.ConnectionTimeout, match="connection timeout expired"):
            connect_without_lookup(conninfo, timeout_seconds=2)
        assert open_descriptors() == descriptors
    finally:
        thaw(pids)
        session.close()


def connect_once(session: PgSession) -> int:
    try:
        return session.run(backend_pid, timeout_seconds=3, what="look")
    finally:
        session.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_fresh_connection_reports_what_the_server_said(pg_factory: PgFactory) -> None:
    node = pg_factory.primary("refusing")
    wrong_password = replace(
        node.settings,
        superuser=Credentials(username="postgres", password=Secret("not-the-password")),
    )
    # An address connects as it is; a name psycopg.connect looks up, outside libpq.
    for host in ("127.0.0.1", "localhost"):
        upstream = Upstream(host, node.port)
        assert connect_once(remote_session(node.settings, upstream)) > 0
        with pytest.raises(
            PostgresUnreachable,
            match=f"cannot look: Postgres \\({host}:{node.port}\\): connection failed: .*"
            'password authentication failed for user "postgres"',
        ):
            connect_once(remote_session(wrong_password, upstream))
    nowhere = pg_factory.node("nowhere")  # no server, so no socket in its socket directory
    with pytest.raises(PostgresUnreachable, match=r"\.s\.PGSQL\.\d+.*No such file or directory"):
        connect_once(local_session(nowhere.settings))
