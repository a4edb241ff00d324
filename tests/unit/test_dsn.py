"""The libpq multi-host DSN `pgha dsn` prints and the endpoint key carries."""

from __future__ import annotations

import pytest

from pgha.cli_status import member_addresses
from pgha.dsn import multi_host_dsn, quote


def test_every_host_in_order_with_target_and_timeout_and_no_password() -> None:
    dsn = multi_host_dsn([("10.0.0.1", 5432), ("10.0.0.2", 5433)])
    assert dsn == (
        "host=10.0.0.1,10.0.0.2 port=5432,5433 target_session_attrs=read-write connect_timeout=2"
    )
    assert "password" not in dsn


def test_options() -> None:
    dsn = multi_host_dsn(
        [("db1", 5432)],
        target="prefer-standby",
        connect_timeout_seconds=5,
        dbname="app db",
        user="o'brien",
    )
    assert dsn == (
        "host=db1 port=5432 dbname='app db' user='o\\'brien' "
        "target_session_attrs=prefer-standby connect_timeout=5"
    )


def test_libpq_parses_it_back() -> None:
    psycopg = pytest.importorskip("psycopg")
    dsn = multi_host_dsn([("a", 1), ("b", 2)], dbname="x y", user="back\\slash")
    parsed = psycopg.conninfo.conninfo_to_dict(dsn)
    assert parsed["host"] == "a,b"
    assert parsed["port"] == "1,2"
    assert parsed["dbname"] == "x y"
    assert parsed["user"] == "back\\slash"
    assert parsed["connect_timeout"] == "2"


@pytest.mark.parametrize(
    ("addresses", "options", "complaint"),
    [
        ([], {}, "no member"),
        ([("a", 1)], {"target": "writable"}, "unknown session target"),
        ([("a", 1)], {"connect_timeout_seconds": 0}, "at least 1 s"),
        ([("a,b", 1)], {}, "cannot put host"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    addresses: list[tuple[str, int]], options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        multi_host_dsn(addresses, **options)  # type: ignore[arg-type]


def test_quote() -> None:
    assert quote("plain") == "plain"
    assert quote("") == "''"
    assert quote("a b") == "'a b'"


def test_the_leader_comes_first_and_replicas_only_leaves_it_out() -> None:
    document = {
        "leader": "pg2",
        "members": [
            {"name": "pg1", "host": "h1", "port": 1},
            {"name": "pg2", "host": "h2", "port": 2},
            {"name": "pg3", "host": None, "port": None},
            {"name": "pg4", "host": "h4", "port": 4},
        ],
    }
    assert member_addresses(document, replicas_only=False) == [("h2", 2), ("h1", 1), ("h4", 4)]
    assert member_addresses(document, replicas_only=True) == [("h1", 1), ("h4", 4)]
