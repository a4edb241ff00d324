"""`reuse` calls share one backend and one worker thread, and never at the cost of a call:
a restart, a termination or a call that overran its deadline only costs a fresh connection."""

from __future__ import annotations

import threading
import time

import pytest

from pgha.adapters.postgres_session import Connection, local_session
from pgha.errors import PostgresUnreachable
from tests.fixtures.postgres import PgFactory


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
