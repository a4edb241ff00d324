"""The files pgha owns beside and in a data directory: what they say, and how they are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha.adapters.pg_process import RunAs
from pgha.adapters.postgres_files import (
    PostgresPaths,
    quote_value,
    remove_upstream_from_auto_conf,
    render_passfile,
    render_pg_hba,
    render_pgha_conf,
)
from pgha.adapters.postgres_state import Upstream
from pgha.errors import PostgresError
from pgha.settings import Credentials, PostgresSettings
from pgha.settings_base import Secret
from pgha.settings_load import validated
from tests.fixtures.postgres import PgFactory


def settings(**changes: object) -> PostgresSettings:
    base: dict[str, object] = {"data_dir": Path("/srv/pg/data"), "socket_dir": Path("/run/pg")}
    return validated(PostgresSettings, {**base, **changes})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "on"),
        (False, "off"),
        (10, "10"),
        (0.5, "0.5"),
        ("128MB", "'128MB'"),
        ("it's", "'it''s'"),
        ("a\\b", "'a\\\\b'"),
    ],
)
def test_values_are_quoted_for_postgresql_conf(value: str | int | float | bool, text: str) -> None:
    assert quote_value(value) == text


def test_a_value_with_a_line_break_is_refused() -> None:
    with pytest.raises(PostgresError, match="line break"):
        quote_value("a\ninclude '/etc/shadow'")


def test_pgha_conf_of_a_replica_names_its_upstream_and_passfile_but_no_password() -> None:
    node = settings(
        listen="127.0.0.1:5433",
        replication=Credentials(username="replicator", password=Secret("pw")),
        parameters={"max_wal_senders": 20, "work_mem": "8MB"},
    )
    paths = PostgresPaths.for_settings(node)
    text = render_pgha_conf(
        node, paths, upstream=Upstream("10.0.0.7", 5432, "n2"), application_name="n2"
    )
    assert "listen_addresses = '127.0.0.1'" in text
    assert "port = 5433" in text
    assert "unix_socket_directories = '/run/pg'" in text
    assert "hba_file = '/srv/pg/data/pg_hba.conf'" in text
    assert "max_wal_senders = 20" in text  # parameters override pgha's defaults
    assert "max_wal_senders = 10" not in text
    assert "work_mem = '8MB'" in text
    assert "primary_slot_name = 'n2'" in text
    (conninfo,) = [line for line in text.splitlines() if line.startswith("primary_conninfo")]
    assert "host=10.0.0.7" in conninfo
    assert "passfile=/srv/pg/data.pgpass" in conninfo
    assert "application_name=n2" in conninfo
    assert "pw" not in conninfo.replace("pgpass", "")
    primary = render_pgha_conf(node, paths, upstream=None, application_name="n2")
    assert "primary_conninfo =" not in primary


@pytest.mark.parametrize(
    "name", ["port", "primary_conninfo", "unix_socket_directories", "hba_file"]
)
def test_parameters_may_not_take_over_a_setting_pgha_owns(name: str) -> None:
    node = settings(parameters={name: "x"})
    with pytest.raises(PostgresError, match=f"may not set {name}"):
        render_pgha_conf(
            node, PostgresPaths.for_settings(node), upstream=None, application_name="a"
        )


def test_pg_hba_admits_loopback_for_a_loopback_member_then_the_configured_lines() -> None:
    hba = render_pg_hba(
        settings(connect_address="127.0.0.1:5432", pg_hba=["host all app all scram-sha-256"])
    )
    lines = hba.splitlines()
    assert 'local  all          "postgres"  peer map=pgha' in lines
    assert 'host   all          "postgres"  127.0.0.0/8  scram-sha-256' in lines
    assert 'host   replication  "replicator"  127.0.0.0/8  scram-sha-256' in lines
    assert lines[-1] == "host all app all scram-sha-256"
    assert "0.0.0.0/0" not in hba


def test_pg_hba_admits_the_directly_connected_networks_of_another_member() -> None:
    hba = render_pg_hba(settings(connect_address="10.1.2.3:5432"))
    assert 'host   replication  "replicator"  samenet  scram-sha-256' in hba
    assert "127.0.0.0/8" not in hba


def test_passfile_escapes_separators_and_skips_users_without_a_password() -> None:
    node = settings(
        superuser=Credentials(username="postgres"),
        replication=Credentials(username="rep", password=Secret("a:b\\c")),
    )
    assert render_passfile(node) == "*:*:*:rep:a\\:b\\\\c\n"


def test_a_rewind_user_may_reach_the_postgres_database_only_and_has_a_passfile_line() -> None:
    node = settings(rewind=Credentials(username="rewinder", password=Secret("rw")))
    hba = render_pg_hba(node).splitlines()
    assert 'host   postgres     "rewinder"  127.0.0.0/8  scram-sha-256' in hba
    assert not any('"rewinder"' in line and "postgres " not in line for line in hba)
    assert "*:*:*:rewinder:rw" in render_passfile(node).splitlines()
    assert "rewinder" not in render_pg_hba(settings())


def test_only_the_upstream_is_removed_from_postgresql_auto_conf(tmp_path: Path) -> None:
    paths = PostgresPaths(tmp_path, tmp_path / "pgpass", tmp_path / "log")
    paths.auto_conf.write_text(
        "# Do not edit this file manually!\n"
        "work_mem = '8MB'\n"
        "primary_conninfo = 'host=old password=secret'\n"
        "Primary_Slot_Name = 'old'\n"
    )
    no_switch = RunAs("tester", "/")  # no uid: files stay with whoever runs the test
    removed = remove_upstream_from_auto_conf(paths, no_switch)
    assert removed == ["primary_conninfo", "Primary_Slot_Name"]
    assert paths.auto_conf.read_text() == "# Do not edit this file manually!\nwork_mem = '8MB'\n"
    assert remove_upstream_from_auto_conf(paths, no_switch) == []


@pytest.mark.integration
def test_quoted_parameters_reach_the_server_unchanged(pg_factory: PgFactory) -> None:
    odd = "o'k \\ fine"
    node = pg_factory.primary("p", cluster_name=odd, work_mem="7MB")
    assert node.sql("SELECT current_setting('cluster_name'), current_setting('work_mem')") == [
        (odd, "7MB")
    ]
