"""`pgha restart`/`pgha reinit` through `requests/<member>`, and the role-change hooks,
against real agents, etcd and Postgres."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.agent_node import CLUSTER_NAME, AgentNode
from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]

HOOK = """#!/bin/sh
# Appends one line per call; pre_promote fails while <dir>/<node>.fail exists.
echo "$PGHA_EVENT node=$PGHA_NODE role=$PGHA_ROLE term=$PGHA_TERM leader=$PGHA_LEADER args=$*" \\
    >> "{log}"
if [ "$PGHA_EVENT" = pre_promote ] && [ -e "{dir}/$PGHA_NODE.fail" ]; then
    echo "fencing $PGHA_NODE's predecessor failed: no IPMI answer" >&2
    exit 3
fi
"""


def test_restart_and_reinit_run_once_through_the_member_agent(
    agent_cluster: AgentCluster,
) -> None:
    cluster = agent_cluster(3)
    leader = cluster.wait_healthy()
    replica = next(node for node in cluster.nodes if node is not leader)
    cluster.sql(leader, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")

    unknown = pgha(cluster, "restart", "nope", "--yes")
    cluster.check(
        unknown.returncode == 1 and "no member named nope" in unknown.stderr, unknown.stderr
    )

    before = replica.postmaster_pid()
    restarted = pgha(cluster, "restart", replica.name, "--yes")
    cluster.check(restarted.returncode == 0 and "done" in restarted.stdout, restarted.stderr)
    cluster.check(replica.postmaster_pid() != before, "the replica's postmaster is the same")
    cluster.check(cluster.etcd_get(f"requests/{replica.name}") is None, "request left behind")
    cluster.wait_healthy()

    term = (cluster.etcd_get("status") or {}).get("term")
    before = leader.postmaster_pid()
    restarted = pgha(cluster, "restart", leader.name, "--yes")
    cluster.check(restarted.returncode == 0, restarted.stderr)
    cluster.check(leader.postmaster_pid() != before, "the primary's postmaster is the same")
    cluster.check(cluster.leader() == leader.name, "the primary lost the key on a restart")
    cluster.check((cluster.etcd_get("status") or {}).get("term") == term, "a new term began")
    cluster.wait_until(lambda: cluster.is_primary(leader), what="the primary takes writes again")

    refused = pgha(cluster, "reinit", leader.name, "--yes")
    cluster.check(
        refused.returncode == 1 and "switch over to another member first" in refused.stderr,
        refused.stderr,
    )
    cluster.check(cluster.is_primary(leader) is True, "a refused reinit touched the primary")

    reinit = pgha(cluster, "reinit", replica.name, "--yes")
    cluster.check(reinit.returncode == 0 and "done" in reinit.stdout, reinit.stderr)
    moved = [p for p in replica.root.iterdir() if p.name.startswith("data.moved-")]
    cluster.check(len(moved) == 1, f"the old data directory was not kept aside: {moved}")
    cluster.wait_healthy()
    rows = cluster.sql(replica, "SELECT v FROM kept")
    cluster.check(rows == [(42,)], f"the re-cloned replica reads {rows}")
    record = cluster.etcd_get(f"members/{replica.name}") or {}
    answer = record.get("request") or {}
    cluster.check(
        answer.get("action") == "reinit" and answer.get("outcome") == "done",
        f"the member record does not answer the reinit: {answer}",
    )


def _hook_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_hooks_run_in_order_and_a_failing_pre_promote_keeps_a_node_from_promoting(
    agent_cluster: AgentCluster, pg_base_dir: Path
) -> None:
    hooks_dir = Path(tempfile.mkdtemp(prefix="hooks-", dir=pg_base_dir))
    hooks_dir.chmod(0o777)  # the agents run as the postgres user and append to the log
    log = hooks_dir / "calls.log"
    script = hooks_dir / "hook.sh"
    script.write_text(HOOK.format(log=log, dir=hooks_dir))
    script.chmod(0o755)
    hooks = {"pre_promote": str(script), "on_role_change": [str(script)], "timeout": 4}
    cluster = agent_cluster(3, hooks=hooks)
    leader = cluster.wait_healthy()
    survivors = [node for node in cluster.nodes if node is not leader]
    cluster.wait_until(
        lambda: all(
            f"on_role_change node={node.name} role=replica" in "\n".join(_hook_log(log))
            for node in survivors
        ),
        what="on_role_change reports each replica",
    )
    cluster.check(
        any(f"node={leader.name} role=primary" in line for line in _hook_log(log)),
        f"no on_role_change for the bootstrap primary: {_hook_log(log)}",
    )

    for node in survivors:
        (hooks_dir / f"{node.name}.fail").write_text("")
    leader.kill_host()

    def sits_out(node: AgentNode) -> bool:
        done = pgha(cluster, "status", "--json")
        members = json.loads(done.stdout).get("members", []) if done.stdout else []
        reasons = [m["decision"]["reason"] for m in members if m["name"] == node.name]
        return any("pre_promote hook" in reason and "exited 3" in reason for reason in reasons)

    cluster.wait_until(
        lambda: all(sits_out(node) for node in survivors),
        what="pgha status shows both survivors out of the election after their failed hook",
        timeout=90,
    )
    cluster.check(cluster.leader() is None, f"{cluster.leader()} holds the key after a failed hook")
    promoted = [node.name for node in survivors if cluster.is_primary(node)]
    cluster.check(not promoted, f"{promoted} promoted although its pre_promote hook failed")

    winner = survivors[-1]
    (hooks_dir / f"{winner.name}.fail").unlink()
    cluster.wait_until(lambda: cluster.leader() == winner.name, what=f"{winner.name} leads")
    cluster.wait_until(lambda: cluster.is_primary(winner), what=f"{winner.name} takes writes")

    def calls_of_winner() -> list[str]:
        return [line for line in _hook_log(log) if f"node={winner.name}" in line]

    cluster.wait_until(
        lambda: any(
            line.startswith("on_role_change") and "role=primary" in line
            for line in calls_of_winner()
        ),
        what=f"on_role_change(primary) on {winner.name}",
    )
    mine = calls_of_winner()
    last_pre = max(i for i, line in enumerate(mine) if line.startswith("pre_promote"))
    first_primary = min(
        i
        for i, line in enumerate(mine)
        if line.startswith("on_role_change node") and "role=primary" in line
    )
    cluster.check(
        last_pre < first_primary, f"on_role_change(primary) came before pre_promote: {mine}"
    )
    cluster.check(
        mine[last_pre].endswith(f"args=pre_promote primary {CLUSTER_NAME}"),
        f"the hook was not given event, role and cluster as arguments: {mine[last_pre]}",
    )
    shutil.rmtree(hooks_dir, ignore_errors=True)
