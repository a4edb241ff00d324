"""The docker-compose demo, checked statically (no Docker engine exists on our machines):
the compose file against the compose specification, its references (services, files,
secrets, volumes), the agents' configuration as each container sees it, HAProxy's
configuration, and the Dockerfile against what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.settings_base import split_address
from pgha.settings_load import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
README = REPO / "README.md"
HAPROXY_CONFIG = REPO / "config/compose/haproxy.cfg"
NODES = ("pg1", "pg2", "pg3")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def depends_on(service: dict[str, Any]) -> list[str]:
    value = service.get("depends_on", [])
    return list(value) if isinstance(value, (list, dict)) else []


def test_the_compose_file_follows_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    assert checker.exists(), f"{checker} is missing: run make setup"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_reference_in_the_compose_file_exists() -> None:
    document = compose()
    defined = set(document["services"])
    for name, service in document["services"].items():
        for target in depends_on(service) + list(service.get("links", [])):
            assert target in defined, f"{name} depends on {target}, which is not a service"
        for secret in service.get("secrets", []):
            assert secret in document["secrets"], f"{name} uses the undefined secret {secret}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in document["volumes"], f"{name} uses the undefined volume {source}"
    for secret in document["secrets"].values():
        assert (REPO / secret["file"]).is_file(), f"secret file {secret['file']} is missing"


def test_three_nodes_and_haproxy_publish_read_write_and_read_only_ports() -> None:
    found = services()
    assert {"etcd", *NODES, "haproxy"} <= set(found)
    for node in NODES:
        assert "etcd" in depends_on(found[node])
        assert found[node]["environment"]["PGHA_NODE"] == node
    published = [port.split(":")[:2] for port in found["haproxy"]["ports"]]
    # Only on the host's loopback: a demo with demo passwords is not for the network.
    assert ["127.0.0.1", "5000"] in published
    assert ["127.0.0.1", "5001"] in published


def test_each_node_loads_its_configuration_as_its_container_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = REPO / "config/compose/pgha.yml"
    for name, service in services().items():
        if name not in NODES:
            continue
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings(config)
        assert settings.node == name
        assert split_address(settings.postgres.connect_address) == (name, 5432)
        assert settings.etcd.endpoints == ["http://etcd:2379"]
        secrets = {f"/run/secrets/{secret}" for secret in service["secrets"]}
        assert str(settings.postgres.superuser.password_file) in secrets
        assert str(settings.postgres.replication.password_file) in secrets
        assert settings.postgres.bin_dir == Path("/usr/lib/postgresql/15/bin")


def test_haproxy_checks_every_node_through_its_api() -> None:
    text = HAPROXY_CONFIG.read_text()
    api_port = split_address(load_settings(REPO / "config/compose/pgha.yml").api.listen)[1]
    for section, check in (
        ("postgres_read_write", "/primary"),
        ("postgres_read_only", "/replica"),
    ):
        body = text.split(f"listen {section}", 1)[1].split("\nlisten ", 1)[0]
        assert f"http-check send meth GET uri {check}" in body
        assert re.findall(r"server (\S+) (\S+):5432 check port (\d+)", body) == [
            (node, node, str(api_port)) for node in NODES
        ]
    assert "on-marked-down shutdown-sessions" in text
    mounted = [v.split(":")[1] for v in services()["haproxy"]["volumes"]]
    assert any(target in services()["haproxy"]["command"] for target in mounted)


@pytest.mark.integration
@pytest.mark.root
def test_haproxy_accepts_the_configuration() -> None:
    """haproxy -c, in a network namespace of its own: the member names resolve only inside
    compose, and the check must not send a DNS query anywhere from here."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "haproxy is missing: run scripts/install-system-deps.sh"
    result = subprocess.run(
        ["unshare", "--net", haproxy, "-c", "-f", str(HAPROXY_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_builds_what_the_readme_promises() -> None:
    dockerfile = DOCKERFILE.read_text()
    readme = README.read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base is not None
    assert base.group(1).startswith("debian:bookworm")
    assert "Debian 12 (bookworm)" in readme
    assert "postgresql-15" in dockerfile
    assert "PostgreSQL 15" in readme
    assert "create_main_cluster = false" in dockerfile  # before the package (traps 21)
    for source in re.findall(r"^COPY ([^\n]+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"the Dockerfile copies {path}, which is missing"
    # The image runs `pgha agent` as postgres with the config the compose file overrides.
    assert "USER postgres" in dockerfile
    assert "PGHA_CONFIG=/etc/pgha/pgha.yml" in dockerfile
    for command in re.findall(r"docker compose (?:kill|stop|start|exec|logs) (pg\d)", readme):
        assert command in services(), f"the README names a service {command} that is missing"
    assert "docker compose up" in readme
    assert "checked statically" in readme
