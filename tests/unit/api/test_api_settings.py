"""`api.tls` and `api.auth` in the settings file: what loads, what each inconsistency says,
which files `pgha config check` reports unreadable, and when it warns about an exposed API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.cli import configuration_warnings
from pgha.errors import ConfigError
from pgha.settings import Settings, unreadable_files
from pgha.settings_load import load_settings, masked

TOKEN = "t0ken-for-the-api"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PGHA_"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, api: dict[str, Any]) -> Settings:
    path = tmp_path / "pgha.yml"
    path.write_text(yaml.safe_dump({"node": "pg1", "postgres": {"data_dir": "/d"}, "api": api}))
    return load_settings(path)


def problem(tmp_path: Path, api: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, api)
    [line] = caught.value.problems
    return line.split(": ", 1)[1]


def test_no_tls_and_no_auth_by_default(tmp_path: Path) -> None:
    api = load(tmp_path, {}).api
    assert not api.tls.enabled
    assert not api.auth.required


def test_a_full_section_loads_and_the_token_is_masked(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {
            "listen": "10.0.0.1:8008",
            "tls": {"cert": "/c", "key": "/k", "ca_cert": "/ca", "verify_client": "optional"},
            "auth": {"token": TOKEN, "client_cert": True},
        },
    )
    assert settings.api.tls.enabled
    assert settings.api.tls.verify_client == "optional"
    assert settings.api.auth.required
    assert TOKEN not in str(masked(settings))
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ({"auth": {"token": TOKEN, "token_file": "/t"}}, "give either token or token_file"),
        ({"tls": {"cert": "/c"}}, "cert and key go together"),
        ({"tls": {"key": "/k"}}, "cert and key go together"),
        (
            {"tls": {"cert": "/c", "key": "/k", "verify_client": "required"}},
            "verify_client: required needs ca_cert",
        ),
        ({"tls": {"ca_cert": "/ca"}}, "need cert and key: clients are verified over TLS only"),
        ({"tls": {"cert": "/c", "key": "/k", "verify_client": "maybe"}}, "'none', 'optional'"),
        ({"auth": {"client_cert": True}}, "auth.client_cert needs tls.verify_client"),
        ({"auth": {"token": "two words"}}, "visible ASCII characters without spaces"),
        ({"auth": {"token": ""}}, "visible ASCII characters without spaces"),
        ({"auth": {"token": 12345678}}, "valid string"),
    ],
)
def test_inconsistent_sections_say_what_to_change(
    tmp_path: Path, api: dict[str, Any], expected: str
) -> None:
    message = problem(tmp_path, api)
    assert expected in message
    assert "two words" not in message
    assert "12345678" not in message


def test_unreadable_certificate_and_token_files_are_reported(tmp_path: Path) -> None:
    readable = tmp_path / "ca.crt"
    readable.write_text("x")
    settings = load(
        tmp_path,
        {
            "tls": {
                "cert": str(tmp_path / "api.crt"),
                "key": str(tmp_path / "api.key"),
                "ca_cert": str(readable),
                "verify_client": "required",
            },
            "auth": {"token_file": str(tmp_path / "token")},
        },
    )
    keys = [line.split(":", 1)[0] for line in unreadable_files(settings)]
    assert keys == ["api.tls.cert", "api.tls.key", "api.auth.token_file"]
    assert "cannot read" in unreadable_files(settings)[0]


@pytest.mark.parametrize(
    ("api", "warned"),
    [
        ({"listen": "127.0.0.1:8008"}, []),
        ({"listen": "[::1]:8008"}, []),
        ({"listen": "localhost:8008"}, []),
        ({"listen": "0.0.0.0:8008"}, ["api.auth is not set"]),
        ({"listen": "10.0.0.1:8008"}, ["api.auth is not set"]),
        ({"listen": "db1.example.com:8008"}, ["api.auth is not set"]),
        ({"listen": "10.0.0.1:8008", "auth": {"token": TOKEN}}, ["in clear text"]),
        (
            {
                "listen": "10.0.0.1:8008",
                "auth": {"token": TOKEN},
                "tls": {"cert": "/c", "key": "/k"},
            },
            [],
        ),
    ],
)
def test_config_check_warns_about_an_exposed_api(
    tmp_path: Path, api: dict[str, Any], warned: list[str]
) -> None:
    warnings = [w for w in configuration_warnings(load(tmp_path, api)) if w.startswith("api")]
    assert len(warnings) == len(warned)
    for warning, expected in zip(warnings, warned, strict=True):
        assert expected in warning
        assert TOKEN not in warning
