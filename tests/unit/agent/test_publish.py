"""What a member record and the endpoint key say about the API: its URL, with the scheme
the API really speaks, so that whoever follows `api_url` does not speak HTTP to a TLS port."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha.adapters.store import LeaderClaim
from pgha.agent.endpoint import endpoint_record
from pgha.agent.publish import member_record
from pgha.agent.runtime import Runtime
from pgha.core.decision import Decision
from pgha.core.model import LocalPostgres, PgRunState
from pgha.settings import PostgresSettings, Settings
from pgha.settings_api import ApiSettings, ApiTlsSettings

PLAIN = ApiSettings(listen="10.0.0.1:8008")
TLS = ApiSettings(
    listen="10.0.0.1:8008", tls=ApiTlsSettings(cert=Path("/etc/a.crt"), key=Path("/etc/a.key"))
)


def settings_with(api: ApiSettings) -> Settings:
    return Settings(node="pg1", postgres=PostgresSettings(data_dir=Path("/srv/pg1")), api=api)


@pytest.mark.parametrize(
    ("api", "url"), [(PLAIN, "http://10.0.0.1:8008"), (TLS, "https://10.0.0.1:8008")]
)
def test_the_published_api_url_uses_https_once_tls_is_on(api: ApiSettings, url: str) -> None:
    settings = settings_with(api)
    local = LocalPostgres(PgRunState.RUNNING, in_recovery=False, timeline=1)
    record = member_record(settings, local, Runtime("pg1", 2.0), Decision("code", "reason"))
    endpoint = endpoint_record(settings, LeaderClaim("pg1", term=7, lease_id=1))
    assert record["api_url"] == url
    assert endpoint["api_url"] == url


@pytest.mark.parametrize(
    ("busy_with", "code", "state"),
    [
        (None, "stream_from_leader", "running"),
        (None, "rewind_preflight_failed", "diverged"),
        (None, "wait_for_leader_checkpoint", "diverged"),
        (None, "rewind_failed", "diverged"),
        ("rewinding", "rewind_to_follow", "rewinding"),
        ("cloning", "clone_from_leader", "cloning"),
    ],
)
def test_the_published_state_tells_a_repair_apart_from_a_run_state(
    busy_with: str | None, code: str, state: str
) -> None:
    runtime = Runtime("pg1", 2.0)
    runtime.busy_with = busy_with
    local = LocalPostgres(PgRunState.RUNNING, in_recovery=True, timeline=1)
    record = member_record(settings_with(PLAIN), local, runtime, Decision(code, "reason"))
    assert record["state"] == state
