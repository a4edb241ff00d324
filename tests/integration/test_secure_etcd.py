"""Real agents against an etcd that speaks TLS only, requires client certificates and has
`auth enable`d, with a `pgha` user whose role reaches only the cluster's own prefix
(certificates made by openssl in the test).

- The cluster bootstraps, `pgha status --config` works with the node's own file, tokens
  revoked by etcd are renewed without a failover, and a host crash of the primary fails over.
- A wrong CA, a wrong password, a user without permission on the prefix and a missing client
  certificate each make `pgha status --config` exit 2 with a message naming the problem;
  `pgha config check` names a CA file that holds no certificate and a certificate with the
  wrong key.
- When the pgha user's password changes under a running cluster, the leader keeps Postgres
  writable while its lease lasts, then fences itself; the replica never promotes, so there
  are never two writable primaries; the agents log the authentication error; once the
  password is back, the cluster elects a leader again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.agent_node import CLUSTER_NAME, AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.etcd import EtcdServer, TlsFiles, enable_auth, make_tls_files, start_member
from tests.fixtures.operator import pgha, status_json

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
USER = "pgha"
PASSWORD = "etcd-Secret-pgha-41c7"
OUTSIDER = "outsider"
OUTSIDER_PASSWORD = "etcd-Secret-outsider-9d2a"
PREFIX = f"/pgha/{CLUSTER_NAME}/"
EXIT_ETCD_UNREACHABLE = 2


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("secure-etcd-tls"))


@pytest.fixture
def secure_etcd(tls: TlsFiles, tmp_path: Path) -> Iterator[EtcdServer]:
    """TLS only, client certificates required, auth on: `pgha` may read and write the
    cluster's prefix and nothing else; `outsider` only /elsewhere/."""
    server = start_member(tmp_path / "etcd", name="s0", tls=tls)
    try:
        enable_auth(
            server, {USER: (PASSWORD, PREFIX), OUTSIDER: (OUTSIDER_PASSWORD, "/elsewhere/")}
        )
        yield server
    finally:
        server.stop()


def etcd_settings(tls: TlsFiles) -> dict[str, Any]:
    return {
        "ca_cert": str(tls.ca_cert),
        "cert": str(tls.client_cert),
        "key": str(tls.client_key),
        "username": USER,
        "password": PASSWORD,
    }


def start_secure_cluster(
    agent_cluster: AgentCluster, server: EtcdServer, tls: TlsFiles, nodes: int = 2
) -> Cluster:
    cluster = agent_cluster(nodes, etcd_server=server, etcd_settings=etcd_settings(tls))
    cluster.wait_healthy(timeout=120)
    return cluster


def config_copy(node: AgentNode, directory: Path, name: str, **etcd: Any) -> Path:
    """The node's config file with some `etcd` keys changed (None removes a key)."""
    document = yaml.safe_load(node.config_path.read_text())
    for key, value in etcd.items():
        if value is None:
            document["etcd"].pop(key, None)
        else:
            document["etcd"][key] = str(value)
    path = directory / f"{name}.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def leader_and_term(node: AgentNode) -> tuple[str | None, int | None]:
    """The leader and its term as `pgha status --json` with the node's own file shows them."""
    code, document = status_json(node)
    if code != 0 or document is None:
        return None, None
    return document["leader"], document["term"]


def led_by(node: AgentNode, leader: AgentNode) -> tuple[str | None, int | None] | None:
    """(leader, term) once `pgha status` names `leader`, else None (for wait_until)."""
    shown = leader_and_term(node)
    return shown if shown[0] == leader.name else None


def writable(cluster: Cluster) -> list[str]:
    return [node.name for node in cluster.nodes if cluster.is_primary(node)]


@pytest.mark.timeout(420)
def test_agents_and_cli_over_tls_with_client_certificates_and_a_prefix_limited_user(
    agent_cluster: AgentCluster, secure_etcd: EtcdServer, tls: TlsFiles, tmp_path: Path
) -> None:
    cluster = start_secure_cluster(agent_cluster, secure_etcd, tls)
    primary = cluster.primary()
    replica = next(node for node in cluster.nodes if node is not primary)

    # --- the CLI with a node's own file uses its TLS files and credentials ---
    result = pgha("status", "--config", str(replica.config_path))
    cluster.check(result.returncode == 0, f"pgha status: {result.stdout}{result.stderr}")
    cluster.check(primary.name in result.stdout, f"the leader is not shown:\n{result.stdout}")
    leader, term = cluster.wait_until(
        lambda: led_by(replica, primary),
        what=f"pgha status --json names {primary.name} as the leader",
    )

    # --- each wrong setting gives exit 2 and a message naming it ---
    wrong: dict[str, tuple[dict[str, Any], list[str]]] = {
        "wrong-ca": (
            {"ca_cert": tls.other_ca_cert},
            ["certificate verify failed", str(tls.other_ca_cert)],
        ),
        "wrong-password": (
            {"password": "not-the-password"},
            ["'pgha'", "invalid user ID or password", "etcd.username and etcd.password"],
        ),
        "no-permission": (
            {"username": OUTSIDER, "password": OUTSIDER_PASSWORD},
            ["permission denied", "readwrite on the cluster prefix"],
        ),
        "no-client-cert": (
            {"cert": None, "key": None},
            ["requires a client certificate", "set etcd.cert and etcd.key"],
        ),
    }
    for name, (changes, expected) in wrong.items():
        path = config_copy(replica, tmp_path, name, **changes)
        result = pgha("status", "--config", str(path))
        print(f"{name}: {result.stderr.strip()}")
        cluster.check(
            result.returncode == EXIT_ETCD_UNREACHABLE,
            f"{name}: pgha status exited {result.returncode}: {result.stdout}{result.stderr}",
        )
        missing = [text for text in expected if text not in result.stderr]
        cluster.check(not missing, f"{name}: {missing} not in the message:\n{result.stderr}")
        cluster.check(result.stdout == "", f"{name}: printed a status anyway: {result.stdout}")

    # --- config check names broken certificate files (it does not contact etcd) ---
    garbage = tmp_path / "garbage-ca.pem"
    garbage.write_text("not a certificate\n")
    broken: dict[str, tuple[dict[str, Any], str]] = {
        "garbage-ca": ({"ca_cert": garbage}, f"etcd.ca_cert: {garbage} holds no PEM certificate"),
        "other-key": (
            {"key": tls.server_key},
            f"etcd.cert {tls.client_cert} and etcd.key {tls.server_key} do not belong together",
        ),
    }
    for name, (changes, expected_line) in broken.items():
        path = config_copy(replica, tmp_path, name, **changes)
        result = pgha("config", "check", "--config", str(path))
        cluster.check(result.returncode == 1, f"{name}: config check exited {result.returncode}")
        cluster.check(expected_line in result.stderr, f"{name}: {result.stderr}")
    result = pgha("config", "check", "--config", str(replica.config_path))
    cluster.check(result.returncode == 0, f"config check of a good file: {result.stderr}")

    # --- etcd drops every token of the user (a password change, even to the same one):
    # the agents and the CLI authenticate again; nobody loses the key ---
    secure_etcd.etcdctl("user", "passwd", USER, "--interactive=false", stdin=PASSWORD)
    time.sleep(3)  # three cycles
    cluster.check(
        leader_and_term(replica) == (leader, term),
        f"the leader or its term changed after etcd revoked the tokens: {leader_and_term(replica)}",
    )
    for node in cluster.nodes:
        cluster.check("rejected a fresh token" not in node.log(), f"{node.name} re-authenticated")

    # --- a host crash of the primary fails over, through the secure etcd ---
    primary.kill_host()
    cluster.wait_healthy([replica], timeout=60)
    _, new_term = cluster.wait_until(
        lambda: led_by(replica, replica),
        what=f"pgha status --json names {replica.name} as the new leader",
    )
    cluster.check(new_term is not None and term is not None and new_term > term, "term moved")


@pytest.mark.timeout(420)
def test_a_leader_whose_credentials_go_bad_fences_itself_and_nobody_promotes(
    agent_cluster: AgentCluster, secure_etcd: EtcdServer, tls: TlsFiles
) -> None:
    cluster = start_secure_cluster(agent_cluster, secure_etcd, tls)
    primary = cluster.primary()
    replica = next(node for node in cluster.nodes if node is not primary)
    ttl = 10  # the fixture's fast profile: ttl 10, loop_wait 1, safety_margin 2

    # The password changes under the running cluster: etcd drops the tokens at once, and
    # every renewal and read now fails to authenticate.
    secure_etcd.etcdctl("user", "passwd", USER, "--interactive=false", stdin="a-new-password")
    changed = time.monotonic()
    seen: list[tuple[float, list[str]]] = []
    while time.monotonic() - changed < ttl + 15:
        now_writable = writable(cluster)
        seen.append((time.monotonic() - changed, now_writable))
        cluster.check(len(now_writable) <= 1, f"two writable primaries: {now_writable}")
        cluster.check(replica.name not in now_writable, f"{replica.name} promoted without a key")
        if not now_writable:
            break
        time.sleep(0.2)
    cluster.check(not seen[-1][1], f"{primary.name} still writable {ttl + 15} s later: {seen}")
    # While its lease lasted the leader kept its role: the first look, well within the lease
    # it renewed just before the change, still found it writable.
    cluster.check(seen[0][1] == [primary.name], f"the leader demoted at once: {seen[:3]}")
    print(f"{primary.name} stopped writing {seen[-1][0]:.1f} s after the password change")

    log = primary.log()
    for text in ("invalid user ID or password", "check etcd.username and etcd.password"):
        cluster.check(text in log, f"{primary.name}'s log does not say {text!r}")
    cluster.check("code=renew_through_store_outage" in log, "no renewal attempts logged")
    # The cycle's fence_past_deadline or the main thread's deadline check, whichever runs first.
    fenced = "code=fence_past_deadline" in log or "fencing deadline passed" in log
    cluster.check(fenced, "the leader did not fence at its deadline")
    cluster.check("invalid user ID or password" in replica.log(), "the replica says nothing")

    # The operator puts the password back: the agents authenticate again and elect a leader.
    secure_etcd.etcdctl("user", "passwd", USER, "--interactive=false", stdin=PASSWORD)
    cluster.wait_healthy(timeout=90)
    cluster.check(len(writable(cluster)) == 1, "not exactly one primary after the repair")
