"""No secret leaks out of a real cluster: three agents on an etcd with TLS and a password, an
API with TLS and a bearer token, bootstrapped, failed over (a host crash of the primary) and
rejoined (its old primary rewound).

None of the secrets (the Postgres superuser and replication passwords, the etcd password,
the API token, and a wrong token a client tried) appears, raw or escaped as a passfile, JSON,
or a URL would write it:
- in any file under the cluster's directories (agent, guard and Postgres logs, the data
  directories, the run directories), except each node's own config file and passfile;
- in the command line or environment of any process of the test, sampled every 0.1 s from
  the start, so the short-lived pg_basebackup and pg_rewind are seen too;
- in any etcd key;
- in the output of `pgha status`, `status --json`, `dsn`, `history`, `config show` and
  `config check` for every node.

The passfile of every node is mode 0600 and owned by the Postgres OS user; the replication
user can replicate and nothing else; the rewind user (which the rewind above connected as)
can log in to the postgres database and run pg_rewind's four functions, and nothing else.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import pwd
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from pgha.adapters.postgres_users import REWIND_FUNCTIONS
from tests.fixtures.agent_node import CLUSTER_NAME, AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.etcd import EtcdServer, TlsFiles, enable_auth, make_tls_files, start_member
from tests.fixtures.operator import pgha
from tests.fixtures.postgres import REPLICATION_PASSWORD, REWIND_PASSWORD, SUPERUSER_PASSWORD

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
USER = "pgha"
PREFIX = f"/pgha/{CLUSTER_NAME}/"
# Unique per run: any occurrence anywhere on the machine can only come from this test.
ETCD_PASSWORD = f"etcd-pw-{uuid.uuid4().hex}"
API_TOKEN = f"api-token-{uuid.uuid4().hex}"
WRONG_TOKEN = f"wrong-token-{uuid.uuid4().hex}"
SECRETS = {
    "superuser password": SUPERUSER_PASSWORD,
    "replication password": REPLICATION_PASSWORD,
    "rewind password": REWIND_PASSWORD,
    "etcd password": ETCD_PASSWORD,
    "API token": API_TOKEN,
    "a wrong API token": WRONG_TOKEN,
}
SCAN_INTERVAL_SECONDS = 0.1


def spellings(secret: str) -> set[bytes]:
    """The secret as it would look written raw, in a passfile, in JSON or in a URL."""
    forms = {
        secret,
        secret.replace("\\", "\\\\").replace(":", "\\:"),
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
    }
    return {form.encode() for form in forms}


NEEDLES = {spelling: name for name, secret in SECRETS.items() for spelling in spellings(secret)}


def leaks_in(data: bytes, where: str) -> list[str]:
    return [f"{name} in {where}" for needle, name in NEEDLES.items() if needle in data]


# --- the process sampler -------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    try:
        return int(stat.rsplit(b")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return 0


@dataclass
class ProcessSampler:
    """Reads every process's command line and environment every SCAN_INTERVAL_SECONDS and
    keeps those that hold a secret and belong to this test: below the pytest process, or
    naming or working in the cluster's directory. etcdctl, which the test runs itself with
    passwords in its arguments, is the test's tool, not pgha, and is skipped."""

    base: Path
    leaks: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    """Program names of this test's processes seen, to show the sampler saw them."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def forget(self, pid: int) -> None:
        with self._lock:
            self.leaks = {leak for leak in self.leaks if f"pid {pid} " not in leak}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SCAN_INTERVAL_SECONDS)

    def sample(self) -> None:
        marker = str(self.base).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            cmdline = _read(f"/proc/{pid}/cmdline")
            if not cmdline or b"etcdctl" in cmdline:  # a zombie, or the test's own tool
                continue
            ours = marker in cmdline or self._below_pytest(pid)
            if not ours:
                try:
                    ours = os.readlink(f"/proc/{pid}/cwd").startswith(str(self.base))
                except OSError:
                    continue
            if not ours:
                continue
            shown = cmdline.replace(b"\0", b" ")[:200].decode(errors="replace")
            self.seen.add(shown)
            environ = _read(f"/proc/{pid}/environ")
            with self._lock:
                self.leaks.update(leaks_in(cmdline, f"the arguments of pid {pid} ({shown})"))
                self.leaks.update(leaks_in(environ, f"the environment of pid {pid} ({shown})"))

    @staticmethod
    def _below_pytest(pid: int) -> bool:
        me = os.getpid()
        for _ in range(30):
            if pid in (me, 0, 1):
                return pid == me
            pid = _ppid(pid)
        return False


def https_status(node: AgentNode, path: str, tls: TlsFiles, token: str | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=tls.ca_cert)
    connection = http.client.HTTPSConnection(node.host, node.api_port, timeout=5, context=context)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- the cluster ---------------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def secure_etcd(tls: TlsFiles, tmp_path: Path) -> Iterator[EtcdServer]:
    server = start_member(tmp_path / "etcd", name="s0", tls=tls)
    try:
        enable_auth(server, {USER: (ETCD_PASSWORD, PREFIX)})
        yield server
    finally:
        server.stop()


def file_leaks(cluster: Cluster) -> tuple[list[str], int]:
    """Leaks in every file under the nodes' directories but the config and the passfile,
    and how many files were read."""
    allowed = {node.config_path for node in cluster.nodes}
    allowed |= {node.data_dir.with_name(node.data_dir.name + ".pgpass") for node in cluster.nodes}
    found: list[str] = []
    count = 0
    for node in cluster.nodes:
        for path in sorted(node.root.rglob("*")):
            if path in allowed or not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue  # removed meanwhile (a WAL segment, a temporary file)
            count += 1
            found += leaks_in(data, str(path))
    return found, count


def etcd_leaks(server: EtcdServer) -> tuple[list[str], list[str]]:
    """Leaks in every key of the cluster's etcd (keys and values decoded), and the keys."""
    answer = json.loads(server.etcdctl("get", "--prefix", "/", "-w", "json"))
    found, keys = [], []
    for kv in answer.get("kvs", []):
        key = base64.b64decode(kv["key"])
        value = base64.b64decode(kv.get("value", ""))
        keys.append(key.decode(errors="replace"))
        found += leaks_in(key + b"\n" + value, f"etcd key {key.decode(errors='replace')}")
    return found, keys


def cli_leaks(cluster: Cluster) -> list[str]:
    found = []
    for node in cluster.nodes:
        config = str(node.config_path)
        for args in (
            ("status", "--config", config),
            ("status", "--json", "--config", config),
            ("dsn", "--config", config),
            ("history", "--config", config),
            ("config", "show", "--config", config),
            ("config", "check", "--config", config),
        ):
            result = pgha(*args)
            cluster.check(result.returncode == 0, f"pgha {' '.join(args)}: {result.stderr}")
            output = (result.stdout + result.stderr).encode()
            found += leaks_in(output, f"the output of pgha {' '.join(args[:-2])} ({node.name})")
    return found


@pytest.mark.timeout(600)
def test_no_secret_leaks_after_bootstrap_failover_and_rewind(
    agent_cluster: AgentCluster, secure_etcd: EtcdServer, tls: TlsFiles
) -> None:
    etcd_settings = {
        "ca_cert": str(tls.ca_cert),
        "cert": str(tls.client_cert),
        "key": str(tls.client_key),
        "username": USER,
        "password": ETCD_PASSWORD,
    }
    api = {
        "tls": {"cert": str(tls.server_cert), "key": str(tls.server_key)},
        "auth": {"token": API_TOKEN},
    }
    cluster = agent_cluster(3, etcd_server=secure_etcd, etcd_settings=etcd_settings, api=api)
    sampler = ProcessSampler(cluster.nodes[0].root.parent)
    sampler.start()
    try:
        old_primary = cluster.wait_healthy(timeout=180)
        # Controls: the scans find each secret where it is meant to be, and the sampler
        # finds one in a process's arguments.
        check_the_scans_find_secrets(cluster, sampler)

        # The API is asked with the token, without it and with a wrong one.
        for token in (API_TOKEN, None, WRONG_TOKEN):
            status, body = https_status(old_primary, "/cluster", tls, token)
            cluster.check(status == (200 if token == API_TOKEN else 401), f"{status}: {body!r}")
            cluster.check(not leaks_in(body, "/cluster"), "a secret in the API's answer")

        # A host crash of the primary, a failover, and the old primary rewound back in.
        old_primary.kill_host()
        survivors = [node for node in cluster.nodes if node is not old_primary]
        cluster.wait_healthy(survivors, timeout=90)
        old_primary.restart()
        cluster.wait_healthy(timeout=120)
        cluster.wait_for_log(old_primary, "Rewind(", "the old primary rewound", timeout=30)
    finally:
        sampler.stop()

    cluster.check(not sampler.leaks, "secrets leaked:\n" + "\n".join(sorted(sampler.leaks)))
    leaks: list[str] = []
    files, read = file_leaks(cluster)
    keys_leaks, keys = etcd_leaks(secure_etcd)
    leaks += files + keys_leaks + cli_leaks(cluster)
    cluster.check(not leaks, "secrets leaked:\n" + "\n".join(leaks))
    cluster.check(read > 100, f"only {read} files were scanned")
    cluster.check(any(key.startswith(PREFIX + "members/") for key in keys), f"keys: {keys}")
    programs = "\n".join(sorted(sampler.seen))
    for program in ("pgha agent", "pgha.agent.guard", "bin/postgres -D", "bin/pg_basebackup"):
        cluster.check(program in programs, f"the sampler never saw {program}:\n{programs}")
    print("process sampler saw:", sorted({shown.split()[0] for shown in sampler.seen}))

    # The published API URL says https, since the API speaks TLS.
    document = json.loads(pgha("status", "--json", "--config", str(old_primary.config_path)).stdout)
    urls = [member["api_url"] for member in document["members"]]
    cluster.check(all(url.startswith("https://") for url in urls), f"api_url: {urls}")

    check_passfiles(cluster)
    check_replication_user(cluster)
    check_rewind_user(cluster)


def check_the_scans_find_secrets(cluster: Cluster, sampler: ProcessSampler) -> None:
    config = cluster.nodes[0].config_path.read_bytes()
    for name in ("superuser password", "replication password", "etcd password", "API token"):
        cluster.check(f"{name} in x" in leaks_in(config, "x"), f"{name} not found in the config")
    passfile = cluster.nodes[0].data_dir.with_name("data.pgpass").read_bytes()
    cluster.check(
        set(leaks_in(passfile, "x"))
        == {"superuser password in x", "replication password in x", "rewind password in x"},
        "the passfile's escaped passwords are not found",
    )
    decoy = subprocess.Popen(
        ["sh", "-c", "sleep 5", "decoy", WRONG_TOKEN], cwd=cluster.nodes[0].root
    )
    try:
        cluster.wait_until(
            lambda: any(f"pid {decoy.pid} " in leak for leak in sampler.leaks),
            what="the process sampler finds a token in a decoy's arguments",
            timeout=10,
        )
    finally:
        decoy.kill()
        decoy.wait()
    sampler.forget(decoy.pid)


def check_passfiles(cluster: Cluster) -> None:
    owner = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    for node in cluster.nodes:
        passfile = node.data_dir.with_name(node.data_dir.name + ".pgpass")
        stat = passfile.stat()
        cluster.check(stat.st_mode & 0o777 == 0o600, f"{passfile}: mode {stat.st_mode:o}")
        cluster.check(pwd.getpwuid(stat.st_uid).pw_name == owner, f"{passfile}: owner")


def check_role(cluster: Cluster, role: str, *, replication: bool, allowed_into: str) -> None:
    """`role` may log in, replicate only if `replication`, belongs to no role, holds no
    other attribute, and pg_hba admits it to `allowed_into` only (a database name, or
    "replication")."""
    primary = cluster.primary()
    [flags] = cluster.sql(
        primary,
        "SELECT rolsuper, rolreplication, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin,"
        " (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)"
        " FROM pg_roles r WHERE rolname = %s",
        (role,),
    )
    expected = (False, replication, False, False, False, True, 0)
    cluster.check(tuple(flags) == expected, f"{role}'s attributes: {flags}")
    refused = "template1" if allowed_into == "postgres" else "postgres"
    password = REPLICATION_PASSWORD if replication else REWIND_PASSWORD
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(
            host=primary.host,
            port=primary.port,
            user=role,
            password=password,
            dbname=refused,
            connect_timeout=5,
        ).close()


def check_replication_user(cluster: Cluster) -> None:
    # pg_hba lets it in for replication only: no database session.
    check_role(cluster, "replicator", replication=True, allowed_into="replication")


def check_rewind_user(cluster: Cluster) -> None:
    check_role(cluster, "rewinder", replication=False, allowed_into="postgres")
    granted = cluster.sql(
        cluster.primary(),
        "SELECT p.oid::regprocedure::text FROM pg_proc p, aclexplode(p.proacl) a"
        " WHERE a.grantee = 'rewinder'::regrole AND a.privilege_type = 'EXECUTE'",
    )
    wanted = sorted(f.removeprefix("pg_catalog.").replace(" ", "") for f in REWIND_FUNCTIONS)
    cluster.check(
        sorted(row[0] for row in granted) == wanted,
        f"rewinder may execute exactly pg_rewind's functions: {granted}",
    )
