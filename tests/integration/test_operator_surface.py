"""The operator's read-only surface on a real cluster: `pgha status` (table and JSON),
`pgha dsn`, the published `endpoint` key and every HTTP endpoint of the agents, on a healthy
cluster, with a stopped replica, without a leader, and after a failover.

One cluster serves the whole story to keep start-ups few. Pausing the cluster (the `paused`
flag of the dynamic config) keeps a stopped replica stopped and a dead primary's key
unclaimed for as long as the assertions need; resuming lets the failover happen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgha.adapters.etcd_store import EtcdStore
from pgha.adapters.store import CONFIG, Record
from pgha.status import cluster_document
from tests.fixtures.agent_node import CLUSTER_NAME, AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.operator import Reply, api_get, health_codes, pgha, status_json
from tests.fixtures.postgres import SUPERUSER_PASSWORD

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
PRIMARY_CODES = {
    "/primary": 200,
    "/read-write": 200,
    "/leader": 200,
    "/replica": 503,
    "/read-only": 200,
    "/health": 200,
}
REPLICA_CODES = {
    "/primary": 503,
    "/read-write": 503,
    "/leader": 503,
    "/replica": 200,
    "/read-only": 200,
    "/health": 200,
}
STOPPED_CODES = dict.fromkeys(PRIMARY_CODES, 503)


def document(cluster: Cluster) -> dict[str, Any]:
    store = EtcdStore([cluster.etcd.endpoint], cluster.prefix, timeout=2)
    try:
        return cluster_document(CLUSTER_NAME, store.read_cluster())
    finally:
        store.close()


def members(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {member["name"]: member for member in doc["members"]}


def set_paused(cluster: Cluster, paused: bool) -> None:
    """What `pgha pause`/`resume` do: flip `paused` in the dynamic config, compare-and-set."""
    store = EtcdStore([cluster.etcd.endpoint], cluster.prefix, timeout=2)
    try:
        for _ in range(5):
            current = store.read_cluster().get(CONFIG)
            assert isinstance(current, Record), "the cluster has no dynamic config"
            changed = {**current.data, "paused": paused}
            if store.put(CONFIG, changed, expected_mod_revision=current.mod_revision):
                return
        raise AssertionError("the dynamic config kept changing under us")
    finally:
        store.close()


def settled(cluster: Cluster, leader: AgentNode, codes: dict[str, str]) -> dict[str, Any] | None:
    """The status document once every member in `codes` shows that state (published)."""
    doc = document(cluster)
    found = members(doc)
    if doc["leader"] != leader.name:
        return None
    states = {name: found[name]["state"] for name in codes if name in found}
    return doc if states == codes else None


def check_healthy_status(cluster: Cluster, primary: AgentNode) -> int:
    """`pgha status` (table, JSON and --etcd flags) on a healthy cluster; returns the term."""
    names = {node.name: "streaming" for node in cluster.nodes if node is not primary}
    cluster.wait_until(
        lambda: settled(cluster, primary, {primary.name: "running", **names}),
        what="every member published its state",
    )
    code, doc = status_json(primary)
    cluster.check(code == 0 and doc is not None, f"status --json exited {code}")
    assert doc is not None
    term = doc["term"]
    cluster.check(doc["leader"] == primary.name and doc["paused"] is False, f"{doc}")
    for member in doc["members"]:
        cluster.check(
            {"host", "port", "api_url", "timeline", "lsn", "tags", "decision"} <= set(member),
            f"member fields missing: {member}",
        )
        cluster.check(member["decision"]["code"], f"no decision code: {member}")
        cluster.check(isinstance(member["lag_bytes"], int), f"lag unknown: {member}")
        # None only until a replica has replayed its first commit since it started.
        allowed = (float,) if member["name"] == primary.name else (float, type(None))
        cluster.check(isinstance(member["lag_seconds"], allowed), f"lag s: {member}")
    table = pgha("status", "--config", str(primary.config_path))
    cluster.check(table.returncode == 0, f"status: {table.returncode} {table.stderr}")
    cluster.check(
        f"cluster {CLUSTER_NAME}: leader {primary.name}, term {term}, not paused" in table.stdout,
        table.stdout,
    )
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:4]}
    cluster.check(rows[primary.name][2] == "leader", table.stdout)
    by_flags = pgha("status", "--etcd", cluster.etcd.endpoint, "--cluster", CLUSTER_NAME)
    cluster.check(by_flags.returncode == 0, by_flags.stderr)
    cluster.check(f"leader {primary.name}, term {term}" in by_flags.stdout, by_flags.stdout)
    check_watch(cluster, primary)
    return int(term)


def check_watch(cluster: Cluster, primary: AgentNode) -> None:
    """`pgha status --watch --json`: one document per line per refresh, until Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGHA_", "PG"))}
    command = ["status", "--watch", "0.3", "--json", "--config", str(primary.config_path)]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "pgha", *command], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert watcher.stdout is not None
        documents = [json.loads(watcher.stdout.readline()) for _ in range(2)]
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=30)
    cluster.check(all(doc["leader"] == primary.name for doc in documents), f"{documents}")
    cluster.check(watcher.returncode == 0, f"--watch exited {watcher.returncode}")


def check_dsn(cluster: Cluster, primary: AgentNode) -> None:
    def lands(*args: str) -> tuple[int, bool]:
        result = pgha("dsn", "--config", str(primary.config_path), *args)
        cluster.check(result.returncode == 0, f"pgha dsn {args}: {result.stderr}")
        dsn = result.stdout.strip()
        cluster.check("connect_timeout=2" in dsn and "password" not in dsn, dsn)
        with psycopg.connect(
            dsn, user="postgres", password=SUPERUSER_PASSWORD, dbname="postgres"
        ) as session:
            row = session.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
        assert row is not None
        return int(row[0]), bool(row[1])

    cluster.check(lands() == (primary.port, False), "the read-write DSN missed the primary")
    port, in_recovery = lands("--replicas")
    cluster.check(in_recovery and port != primary.port, "the replica DSN reached the primary")


def check_endpoint(cluster: Cluster, primary: AgentNode, term: int) -> None:
    endpoint = cluster.wait_until(
        lambda: (value := cluster.etcd_get("endpoint")) and value.get("term") == term and value,
        what=f"the endpoint key names {primary.name} in term {term}",
    )
    cluster.check(
        (endpoint["name"], endpoint["host"], endpoint["port"])
        == (primary.name, primary.host, primary.port),
        f"endpoint {endpoint}",
    )
    cluster.check("target_session_attrs=read-write" in endpoint["dsn"], f"{endpoint}")


def wait_codes(cluster: Cluster, node: AgentNode, expected: Mapping[str, int | None]) -> None:
    cluster.wait_until(
        lambda: health_codes(node) == expected,
        what=f"{node.name}'s health checks answer {expected}",
        timeout=30,
    )


def check_api(cluster: Cluster, node: AgentNode, term: int) -> None:
    """Terms, /liveness, /cluster, /history, /metrics and refusals on one live node."""
    replies: dict[str, Reply | None] = {
        path: api_get(node, path)
        for path in ("/primary", "/liveness", "/cluster", "/history", "/metrics")
    }
    for path, reply in replies.items():
        cluster.check(reply is not None, f"{node.name}{path}: no answer")
        assert reply is not None
        cluster.check(reply.term == str(term), f"{node.name}{path}: X-Pgha-Term {reply.term}")
    answers = {path: reply for path, reply in replies.items() if reply is not None}
    cluster.check(answers["/liveness"].status == 200, f"{node.name} not alive")
    health = answers["/primary"].json()
    cluster.check(
        {"role", "state", "term", "timeline", "lsn"} <= set(health), f"health body {health}"
    )
    doc = answers["/cluster"].json()
    cluster.check(doc["leader"] is not None and "snapshot_age_seconds" in doc, f"{doc}")
    cluster.check(isinstance(answers["/history"].json(), list), "history is not a list")
    families = {
        family.name: family
        for family in text_string_to_metric_families(answers["/metrics"].body.decode())
    }
    cluster.check(all(name.startswith("pgha_") for name in families), f"{sorted(families)}")
    cluster.check(
        {"pgha_role", "pgha_term", "pgha_timeline", "pgha_paused"} <= set(families),
        f"metrics missing: {sorted(families)}",
    )
    for method in ("POST", "PUT", "DELETE"):
        refused = api_get(node, "/primary", method)
        cluster.check(refused is not None and refused.status == 405, f"{method} allowed")
    unknown = api_get(node, "/no/such/path")
    cluster.check(unknown is not None and unknown.status == 404, "unknown path answered")


@pytest.mark.timeout(400)
def test_status_api_and_endpoint_through_a_stopped_replica_and_a_failover(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(3)
    old = cluster.wait_healthy()
    stopped, other = [node for node in cluster.nodes if node is not old]

    # --- healthy ---
    term = check_healthy_status(cluster, old)
    check_dsn(cluster, old)
    check_endpoint(cluster, old, term)
    wait_codes(cluster, old, PRIMARY_CODES)
    for replica in (stopped, other):
        wait_codes(cluster, replica, REPLICA_CODES)
        lagging = api_get(replica, "/replica?lag=16MB")
        cluster.check(lagging is not None and lagging.status == 200, "lag limit refused")
    for node in cluster.nodes:
        check_api(cluster, node, term)

    # --- paused, with a stopped replica ---
    set_paused(cluster, True)
    cluster.wait_until(
        lambda: all(m["decision"]["code"] == "paused" for m in document(cluster)["members"]),
        what="every agent sees the pause",
    )
    stopped.kill_postgres()
    cluster.wait_until(
        lambda: settled(cluster, old, {stopped.name: "stopped", other.name: "streaming"}),
        what=f"{stopped.name} is published as stopped",
    )
    code, doc = status_json(old)
    cluster.check(code == 0 and doc is not None and doc["paused"] is True, f"{code} {doc}")
    table = pgha("status", "--config", str(old.config_path))
    cluster.check(table.returncode == 0 and "PAUSED" in table.stdout, table.stdout)
    row = next(line for line in table.stdout.splitlines() if line.startswith(stopped.name))
    cluster.check(row.split()[3] == "stopped", f"stopped replica shown as {row}")
    wait_codes(cluster, stopped, STOPPED_CODES)
    liveness = api_get(stopped, "/liveness")
    cluster.check(liveness is not None and liveness.status == 200, "the agent looks dead")

    # --- the primary's host dies while paused: no leader, and nobody takes over ---
    old.kill_host()
    cluster.wait_until(lambda: cluster.leader() is None, what="the dead leader's key expires")
    code, doc = status_json(other)
    cluster.check(code == 1 and doc is not None, f"status without a leader exited {code}")
    assert doc is not None
    cluster.check(doc["leader"] is None and doc["term"] == term, f"{doc}")
    table = pgha("status", "--config", str(other.config_path))
    cluster.check(table.returncode == 1, f"exit {table.returncode}")
    cluster.check(f"no leader (last term {term})" in table.stdout, table.stdout)
    cluster.check(api_get(old, "/health") is None, "the dead host's API answers")
    cluster.check(cluster.etcd_get("endpoint") is None, "the endpoint outlived the leader")
    primary_reply = api_get(other, "/primary")
    cluster.check(primary_reply is not None and primary_reply.status == 503, "a primary?")

    # --- resumed: the failover happens ---
    set_paused(cluster, False)
    new = cluster.wait_healthy([stopped, other], timeout=90)
    follower = stopped if new is other else other
    doc = cluster.wait_until(
        lambda: settled(cluster, new, {new.name: "running", follower.name: "streaming"}),
        what=f"{new.name} leads and {follower.name} streams, as published",
    )
    new_term = int(doc["term"])
    cluster.check(new_term > term, f"term {new_term} after {term}")
    code, doc = status_json(follower)
    cluster.check(code == 0 and doc is not None and doc["leader"] == new.name, f"{code} {doc}")
    check_endpoint(cluster, new, new_term)
    wait_codes(cluster, new, PRIMARY_CODES)
    wait_codes(cluster, follower, REPLICA_CODES)
    for node in (new, follower):
        check_api(cluster, node, new_term)
