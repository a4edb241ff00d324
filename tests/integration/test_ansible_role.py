"""The Ansible role, for real: ansible-lint (production profile), then a converge of this
machine (connection: local, as root), a second converge that changes nothing, and checks
of what the role left behind.

pgha's own files go under a throwaway prefix (config, virtualenv, unit, data, run and
socket directories, HAProxy's configuration). What the role does to the distribution goes
to the real paths, as it would on a database host: createcluster.conf, start.conf of the
clusters Debian knows, and the /dev/null links that mask postgresql.service and
postgresql@.service (harmless here: systemd is not PID 1, and the tests run their own
Postgres servers from the binaries). The role installs nothing the machine lacks: PostgreSQL
15, python3-venv and HAProxy are already there (scripts/install-system-deps.sh).

The controller is ansible-core 2.19 in .venv-ansible (`make ansible-setup`, a prerequisite
of `make test`): 2.20 and later need Python 3.12.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Two converges and a wheel build run in the module fixture, on the first test's clock.
pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLE = ANSIBLE / "roles" / "pgha"
CONTROLLER = REPO / ".venv-ansible" / "bin"
SUPERUSER_PASSWORD = "role-test-superuser-secret"
REPLICATION_PASSWORD = "role-test-replication-secret"
REWIND_PASSWORD = "role-test-rewind-secret"
RECAP = re.compile(r"^pgtest\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass
class Converged:
    prefix: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]

    def path(self, relative: str) -> Path:
        return self.prefix / relative


def tool(name: str) -> str:
    path = CONTROLLER / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make ansible-setup` (part of `make test`)")
    return str(path)


def controller_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{CONTROLLER}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "NO_COLOR": "1",
    }


def build_wheel(workdir: Path) -> Path:
    """A wheel of this checkout, built from a copy so that nothing lands in the tree."""
    source = workdir / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "pgha", source / "pgha", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(workdir / "dist"),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (workdir / "dist").glob("pgha-*.whl")
    return wheel


def write_inventory(workdir: Path) -> Path:
    inventory = {
        "all": {
            "children": {
                "pgha": {
                    "hosts": {
                        "pgtest": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": "/usr/bin/python3",
                            # The test runs as root already, and the machine has no sudo.
                            "ansible_become": False,
                            "pgha_connect_host": "127.0.0.1",
                        }
                    }
                }
            }
        }
    }
    path = workdir / "inventory.yml"
    path.write_text(json.dumps(inventory))
    return path


def write_vars(workdir: Path, prefix: Path, wheel: Path) -> Path:
    variables = {
        "pgha_wheel": str(wheel),
        "pgha_superuser_password": SUPERUSER_PASSWORD,
        "pgha_replication_password": REPLICATION_PASSWORD,
        "pgha_rewind_password": REWIND_PASSWORD,
        "pgha_config_dir": str(prefix / "etc/pgha"),
        "pgha_venv_dir": str(prefix / "opt/pgha"),
        "pgha_unit_dir": str(prefix / "etc/systemd/system"),
        "pgha_data_dir": str(prefix / "var/lib/pgha/main"),
        "pgha_run_dir": str(prefix / "run/pgha"),
        "pgha_socket_dir": str(prefix / "run/postgresql"),
        "pgha_haproxy_enabled": True,
        "pgha_haproxy_config_path": str(prefix / "etc/haproxy/haproxy.cfg"),
    }
    path = workdir / "vars.json"
    path.write_text(json.dumps(variables))
    return path


def playbook(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("ansible-playbook"), *args],
        cwd=ANSIBLE,
        env=controller_env(workdir / "ansible-home"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    for line in result.stdout.splitlines():
        match = RECAP.match(line)
        if match:
            ok, changed, unreachable, failed = (int(group) for group in match.groups())
            return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}
    raise AssertionError(f"no PLAY RECAP in:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="module")
def converged() -> Iterator[Converged]:
    if os.geteuid() != 0:
        pytest.fail("the role test converges this machine and must run as root")
    workdir = Path(tempfile.mkdtemp(prefix="pgha-role-"))
    workdir.chmod(0o755)  # the agent's user must reach the virtualenv and config below
    prefix = workdir / "root"
    for directory in ("etc/systemd/system", "etc/haproxy"):
        (prefix / directory).mkdir(parents=True)
    try:
        wheel = build_wheel(workdir)
        args = ["-i", str(write_inventory(workdir)), "playbook.yml"]
        args += ["-e", f"@{write_vars(workdir, prefix, wheel)}"]
        first = playbook(workdir, *args)
        assert first.returncode == 0, f"first converge failed:\n{first.stdout}\n{first.stderr}"
        second = playbook(workdir, *args)
        assert second.returncode == 0, f"second converge failed:\n{second.stdout}\n{second.stderr}"
        yield Converged(prefix, first, second)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_ansible_lint_passes_the_production_profile(tmp_path: Path) -> None:
    result = subprocess.run(
        [tool("ansible-lint"), "--offline", "-c", "ansible/.ansible-lint", "ansible/"],
        cwd=REPO,
        env=controller_env(tmp_path / "ansible-home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stderr, result.stderr


def test_the_second_converge_changes_nothing(converged: Converged) -> None:
    first, second = recap(converged.first), recap(converged.second)
    assert first["changed"] > 0
    assert first["failed"] == 0
    assert second == {**second, "changed": 0, "failed": 0, "unreachable": 0}, (
        converged.second.stdout
    )


def test_services_are_left_alone_where_systemd_is_not_pid_1(converged: Converged) -> None:
    with open("/proc/1/comm") as comm:
        assert comm.read().strip() != "systemd", "this test expects a machine without systemd"
    output = converged.first.stdout
    task = output.split("TASK [pgha : Enable and start pgha]", 1)[1].split("TASK [", 1)[0]
    assert "skipping: [pgtest]" in task


def owner_and_mode(path: Path) -> tuple[str, str, int]:
    info = path.stat()
    owner = pwd.getpwuid(info.st_uid).pw_name
    group = grp.getgrgid(info.st_gid).gr_name
    return owner, group, stat.S_IMODE(info.st_mode)


def test_config_and_secrets_have_owners_and_modes(converged: Converged) -> None:
    config_dir = converged.path("etc/pgha")
    assert owner_and_mode(config_dir) == ("root", "postgres", 0o750)
    assert owner_and_mode(config_dir / "pgha.yml") == ("root", "postgres", 0o640)
    for name, secret in (
        ("superuser.pw", SUPERUSER_PASSWORD),
        ("replication.pw", REPLICATION_PASSWORD),
        ("rewind.pw", REWIND_PASSWORD),
    ):
        assert owner_and_mode(config_dir / name) == ("postgres", "postgres", 0o600)
        assert (config_dir / name).read_text() == secret + "\n"
    config = (config_dir / "pgha.yml").read_text()
    assert SUPERUSER_PASSWORD not in config
    assert REPLICATION_PASSWORD not in config
    assert REWIND_PASSWORD not in config
    assert "rewinder" in config
    assert owner_and_mode(converged.path("var/lib/pgha")) == ("postgres", "postgres", 0o700)


def test_the_rendered_config_passes_pgha_config_check_as_the_agent_user(
    converged: Converged,
) -> None:
    pgha = converged.path("opt/pgha/bin/pgha")
    config = converged.path("etc/pgha/pgha.yml")
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(pgha), "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "node: pgtest" in result.stdout
    assert "connect_address: 127.0.0.1:5432" in result.stdout
    assert SUPERUSER_PASSWORD not in result.stdout + result.stderr


def test_the_distribution_cannot_create_or_start_its_own_postgres(converged: Converged) -> None:
    for unit in ("postgresql.service", "postgresql@.service"):
        link = Path("/etc/systemd/system") / unit
        assert link.is_symlink(), f"{link} is not masked"
        assert os.readlink(link) == "/dev/null", f"{link} is not masked"
    createcluster = Path("/etc/postgresql-common/createcluster.conf").read_text()
    assert re.search(r"^create_main_cluster = false$", createcluster, re.M)
    for start_conf in Path("/etc/postgresql").glob("*/*/start.conf"):
        lines = [line.strip() for line in start_conf.read_text().splitlines()]
        assert [line for line in lines if line and not line.startswith("#")] == ["disabled"]
    assert Path("/usr/lib/postgresql/15/bin/postgres").exists(), "PostgreSQL 15 must stay"


def test_the_unit_installed_by_the_role_passes_systemd_analyze(converged: Converged) -> None:
    unit = converged.path("etc/systemd/system/pgha.service")
    text = unit.read_text()
    assert f"ExecStart={converged.path('opt/pgha/bin/pgha')} agent --config" in text
    assert f"ReadWritePaths={converged.path('var/lib/pgha')}" in text
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_the_role_template_with_its_defaults_is_systemd_pgha_service(tmp_path: Path) -> None:
    """systemd/pgha.service is the role's unit for the default paths, for hosts installed
    without Ansible; the two must not drift apart."""
    rendered = tmp_path / "pgha.service"
    render = tmp_path / "render.yml"
    render.write_text(
        json.dumps(
            [
                {
                    "name": "Render the unit with the role's defaults",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults/main.yml")],
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.template": {
                                "src": str(ROLE / "templates/pgha.service.j2"),
                                "dest": str(rendered),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    result = playbook(
        tmp_path,
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        str(render),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    static = (REPO / "systemd/pgha.service").read_text()
    assert rendered.read_text().split("[Unit]", 1)[1] == static.split("[Unit]", 1)[1]


def test_haproxy_routes_to_the_members_through_their_health_checks(converged: Converged) -> None:
    config = converged.path("etc/haproxy/haproxy.cfg").read_text()
    assert "http-check send meth GET uri /primary" in config
    assert "http-check send meth GET uri /replica?lag=16MB" in config
    assert config.count("server pgtest 127.0.0.1:5432 check port 8008") == 2
    assert "on-marked-down shutdown-sessions" in config
