"""Settings: good files load, every kind of bad input names the key, the file and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgha.errors import ConfigError
from pgha.settings import check_timers
from pgha.settings_base import split_address
from pgha.settings_load import load_settings, masked

GOOD = """\
cluster: main
namespace: pgha
node: pg1
etcd:
  endpoints: ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
postgres:
  data_dir: /var/lib/pgha/pg1
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  superuser: {username: postgres, password: topsecret}
  replication: {username: replicator, password_file: /etc/pgha/replication.pw}
  parameters: {max_connections: 200, shared_buffers: 256MB}
api:
  listen: 127.0.0.1:8008
ttl: 30
loop_wait: 10
retry_timeout: 7
safety_margin: 5
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PGHA_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pgha.yml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def test_a_good_file_loads_with_its_values(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.node == "pg1"
    assert settings.prefix == "/pgha/main/"
    assert settings.etcd.endpoints == ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
    assert settings.postgres.data_dir == Path("/var/lib/pgha/pg1")
    assert settings.postgres.port == 5432
    assert settings.postgres.parameters["max_connections"] == 200
    assert settings.postgres.superuser.secret() == "topsecret"
    assert (settings.ttl, settings.loop_wait, settings.retry_timeout) == (30, 10, 7)


def test_a_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "node: pg1\npostgres: {data_dir: /d}\n"))
    assert (settings.cluster, settings.namespace) == ("main", "pgha")
    assert settings.etcd.endpoints == ["http://127.0.0.1:2379"]
    assert settings.postgres.bin_dir == Path("/usr/lib/postgresql/15/bin")
    assert settings.postgres.os_user == "postgres"
    assert (settings.ttl, settings.loop_wait, settings.retry_timeout, settings.safety_margin) == (
        30,
        10,
        7,
        5,
    )


def test_environment_overrides_the_file_and_merges_nested_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHA_POSTGRES__DATA_DIR", "/srv/pg")
    monkeypatch.setenv("PGHA_ETCD__ENDPOINTS", '["https://10.0.0.1:2379"]')
    monkeypatch.setenv("PGHA_POSTGRES__SUPERUSER__PASSWORD", "from-env")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.postgres.data_dir == Path("/srv/pg")
    assert settings.postgres.listen == "127.0.0.1:5432"  # the file's value survives the merge
    assert settings.etcd.endpoints == ["https://10.0.0.1:2379"]
    assert settings.postgres.superuser.secret() == "from-env"


def test_passwords_from_files_are_read_and_secrets_are_masked(tmp_path: Path) -> None:
    secret_file = tmp_path / "replication.pw"
    secret_file.write_text("repl-secret\n")
    text = GOOD.replace("/etc/pgha/replication.pw", str(secret_file))
    settings = load_settings(write(tmp_path, text))
    assert settings.postgres.replication.secret() == "repl-secret"
    shown = str(masked(settings))
    assert "topsecret" not in shown
    assert "repl-secret" not in shown
    assert "**********" in shown


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "postgres: {data_dir: /d}\n")
    assert problems_of(path) == [f"{path}: node: required key is missing"]


def test_a_wrong_type_is_named_with_what_was_given(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("ttl: 30", "ttl: thirty"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: ttl: ")
    assert "integer" in problem
    assert "'thirty'" in problem


def test_an_unknown_key_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  data_dir:", "  datadir: /x\n  data_dir:"))
    [problem] = problems_of(path)
    assert problem == f"{path}: postgres.datadir: unknown key (check its spelling and section)"


def test_timers_that_leave_no_room_to_fence_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("ttl: 30", "ttl: 20"))
    [problem] = problems_of(path)
    assert "loop_wait + 2 * retry_timeout + safety_margin" in problem
    assert "10 + 2 * 7 + 5 = 29 s exceeds ttl 20 s" in problem


def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    [problem] = problems_of(path)
    assert str(path) in problem
    assert "cannot read" in problem


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "node: pg1\npostgres: [unclosed\n")
    [problem] = problems_of(path)
    assert "not valid YAML at line" in problem


def test_several_problems_give_one_line_each(tmp_path: Path) -> None:
    text = "node: pg1\nbogus: 1\nttl: x\npostgres: {listen: nope}\netcd: {endpoints: [ftp://e]}\n"
    problems = problems_of(write(tmp_path, text))
    keys = sorted(problem.split(": ")[1] for problem in problems)
    assert keys == ["bogus", "etcd.endpoints.0", "postgres.data_dir", "postgres.listen", "ttl"]


def test_an_etcd_timeout_beyond_retry_timeout_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  endpoints:", "  timeout: 9\n  endpoints:"))
    [problem] = problems_of(path)
    assert "etcd.timeout (9 s) must not exceed retry_timeout (7 s)" in problem


@pytest.mark.parametrize(
    ("timers", "ok"),
    [
        ((30, 10, 7, 5), True),
        ((10, 1, 3, 2), True),
        ((30, 10, 10, 5), False),
        ((10, 1, 3, 1), False),  # the margin must cover two guard polls and a stop
    ],
)
def test_timer_rule(timers: tuple[float, float, float, float], ok: bool) -> None:
    if ok:
        check_timers(*timers)
    else:
        with pytest.raises(ValueError, match=r"timers|safety_margin"):
            check_timers(*timers)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:5432", ("127.0.0.1", 5432)), ("[::1]:8008", ("::1", 8008)), ("db:1", ("db", 1))],
)
def test_split_address(text: str, expected: tuple[str, int]) -> None:
    assert split_address(text) == expected


@pytest.mark.parametrize("text", ["5432", ":5432", "host:", "host:99999", "host:http"])
def test_split_address_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|port"):
        split_address(text)
