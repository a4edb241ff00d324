"""The Postgres adapter end to end, on real servers: the failover path of issue 2.

initdb -> primary -> two clones -> promote one -> repoint the other without a restart ->
rewind the old primary after it wrote diverging rows -> it streams from the new primary.
"""

from __future__ import annotations

import pytest

from tests.fixtures.postgres import PgFactory, PgNode, wait_until

pytestmark = pytest.mark.integration


def streams_from(replica: PgNode, upstream: PgNode) -> bool:
    """`replica`'s WAL receiver streams from `upstream`, and `upstream` lists it."""
    receiver = replica.state().wal_receiver
    if receiver is None or receiver.status != "streaming" or receiver.sender_port != upstream.port:
        return False
    return any(
        r.application_name == replica.name and r.state == "streaming"
        for r in upstream.state().replicas
    )


def rows(node: PgNode) -> list[str]:
    return [note for (note,) in node.sql("SELECT note FROM events ORDER BY id")]


def test_clone_promote_repoint_and_rewind(pg_factory: PgFactory) -> None:
    a = pg_factory.primary("a")
    a.sql("CREATE TABLE events (id serial PRIMARY KEY, note text NOT NULL)")
    a.sql("INSERT INTO events (note) VALUES ('before failover')")
    # A stale upstream left by ALTER SYSTEM on the source: a clone must not inherit it.
    a.sql("ALTER SYSTEM SET primary_conninfo = 'host=192.0.2.1 port=1'")

    b = pg_factory.replica("b", a)
    c = pg_factory.replica("c", a)
    wait_until(lambda: streams_from(b, a), what="b streams from a")
    wait_until(lambda: streams_from(c, a), what="c streams from a")
    assert "primary_conninfo" not in (b.data_dir / "postgresql.auto.conf").read_text()
    assert b.state().configured_upstream == a.upstream()

    # The old primary goes away cleanly: both replicas then hold every byte it wrote.
    a.control.stop()
    assert not a.state().running

    b.control.promote()
    b.control.checkpoint()
    promoted = b.state()
    assert promoted.is_primary
    assert promoted.timeline == 2
    assert promoted.checkpointed_since_promotion

    c_postmaster = c.state().postmaster_pid
    c.control.follow(b.upstream())
    wait_until(lambda: streams_from(c, b), what="c streams from b after the repoint")
    repointed = c.state()
    assert repointed.postmaster_pid == c_postmaster, "repointing must not restart Postgres"
    assert repointed.timeline == 2

    # The old primary comes back read-write (split brain) and writes what nobody else has.
    a.control.start_primary()
    a.sql("INSERT INTO events (note) VALUES ('diverged on the old primary')")
    a.sql("SELECT pg_switch_wal()")
    a.control.stop()
    b.sql("INSERT INTO events (note) VALUES ('written on the new primary')")
    b.sql("ALTER SYSTEM SET primary_slot_name = 'stale_slot'")

    report = a.control.rewind(b.upstream())
    assert "diverged" in report
    assert "primary_" not in (a.data_dir / "postgresql.auto.conf").read_text()
    a.control.start_replica(b.upstream())
    wait_until(lambda: streams_from(a, b), what="the rewound old primary streams from b")

    expected = ["before failover", "written on the new primary"]
    wait_until(lambda: rows(a) == expected, what="a has exactly b's rows")
    wait_until(lambda: rows(c) == expected, what="c has exactly b's rows")
    rewound = a.state()
    assert rewound.in_recovery
    assert rewound.system_identifier == promoted.system_identifier
