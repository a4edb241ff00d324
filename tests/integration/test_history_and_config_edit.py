"""`pgha history --summary/--since` and `pgha config edit` against one real three-node
cluster, shared by the module's tests (a cluster costs half a minute to start).

The config edits come first and leave the cluster as healthy as they found it; the history
test then makes two failovers and a switchover and reads back what the agents recorded.
EDITOR is a small shell script that rewrites the temporary file, as an operator would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent_node import CLUSTER_NAME
from tests.fixtures.cluster import TIMERS, Cluster, start_cluster
from tests.fixtures.ops import pgha

pytestmark = pytest.mark.integration

KEPT = re.compile(r"kept in (\S+\.yml)")


@pytest.fixture(scope="module")
def cluster(pg_bin_dir: Path, pg_base_dir: Path) -> Iterator[Cluster]:
    """etcd and three agents, healthy, for every test of this module."""
    base = Path(tempfile.mkdtemp(prefix="history-edit-", dir=pg_base_dir))
    base.chmod(0o755)
    started = start_cluster(base / "c0", 3)
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop_all()
        if os.environ.get("PGHA_TEST_KEEP"):
            print(f"\nkept the directories and logs of this module in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `editor_script` writes EDITOR; temporary files of the command go to tmp_path."""
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path / "editor.sh"


def editor_script(path: Path, monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """Make `path` a shell script run as `path FILE`, and the EDITOR of the next commands."""
    path.write_text("#!/bin/sh\nset -e\n" + "\n".join(lines) + "\n")
    path.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(path))


def set_line(key: str, value: str) -> str:
    return f"sed -i 's/^{key}: .*/{key}: {value}/' \"$1\""


def stored_config(cluster: Cluster) -> dict[str, Any]:
    config = cluster.etcd_get("config")
    assert isinstance(config, dict), config
    return config


# --- config edit ----------------------------------------------------------------------------


def test_config_edit_writes_a_valid_change(
    cluster: Cluster, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor_script(editor, monkeypatch, set_line("maximum_lag_on_failover", "4194304"))
    done = pgha(cluster, "config", "edit", "--yes")
    cluster.check(done.returncode == 0, done.stdout + done.stderr)
    cluster.check("maximum_lag_on_failover: 1048576 -> 4194304" in done.stdout, done.stdout)
    shown = pgha(cluster, "config", "show")
    cluster.check('"maximum_lag_on_failover": 4194304' in shown.stdout, shown.stdout)
    left = list(editor.parent.glob("pgha-config-*.yml"))
    cluster.check(not left, f"a written edit left its temporary file: {left}")


def test_config_edit_refuses_invalid_values_and_keeps_the_edit(
    cluster: Cluster, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored_config(cluster)
    for value, problem in (("soon", "ttl='soon': not a valid value"), ("5", "no room to fence")):
        editor_script(editor, monkeypatch, set_line("ttl", value))
        refused = pgha(cluster, "config", "edit", "--yes")
        cluster.check(refused.returncode == 1, refused.stdout + refused.stderr)
        cluster.check(problem in refused.stderr, refused.stderr)
        kept = KEPT.search(refused.stderr)
        cluster.check(kept is not None, f"no kept file named in: {refused.stderr}")
        assert kept is not None
        path = Path(kept.group(1))
        cluster.check(f"ttl: {value}" in path.read_text(), "the kept file lost the edit")
        cluster.check(stored_config(cluster) == before, "an invalid edit changed the config")


def test_config_edit_of_nothing_is_no_change(
    cluster: Cluster, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor_script(editor, monkeypatch, "echo '# looked, changed nothing' >> \"$1\"")
    unchanged = pgha(cluster, "config", "edit")  # no --yes: no question is asked either
    cluster.check(unchanged.returncode == 0, unchanged.stdout + unchanged.stderr)
    cluster.check(unchanged.stdout.strip() == "no change", unchanged.stdout)


def test_config_edit_loses_to_a_concurrent_change_and_keeps_the_edit(
    cluster: Cluster, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the operator edits, someone else runs `pgha config set`.
    other = (
        f"{sys.executable} -m pgha config set maximum_lag_on_failover=3145728 "
        f"--etcd {cluster.etcd.endpoint} --cluster {CLUSTER_NAME} >/dev/null"
    )
    editor_script(editor, monkeypatch, other, set_line("primary_start_timeout", "200"))
    lost = pgha(cluster, "config", "edit", "--yes")
    cluster.check(lost.returncode == 1, lost.stdout + lost.stderr)
    cluster.check("someone changed it since revision" in lost.stderr, lost.stderr)
    config = stored_config(cluster)
    cluster.check(config["maximum_lag_on_failover"] == 3145728, f"{config}")
    cluster.check(config["primary_start_timeout"] != 200, f"the losing edit was written: {config}")
    kept = KEPT.search(lost.stderr)
    cluster.check(kept is not None, f"no kept file named in: {lost.stderr}")
    assert kept is not None
    cluster.check("primary_start_timeout: 200" in Path(kept.group(1)).read_text(), "edit lost")


# --- history --------------------------------------------------------------------------------


def history_json(cluster: Cluster, *args: str) -> Any:
    shown = pgha(cluster, "history", "--json", *args)
    cluster.check(shown.returncode == 0, shown.stdout + shown.stderr)
    return json.loads(shown.stdout)


@pytest.mark.timeout(360)
def test_history_summary_after_two_failovers_and_a_switchover(cluster: Cluster) -> None:
    cluster.check(not cluster.etcd_get("history"), "the module's cluster promoted already")
    ttl = TIMERS["ttl"]

    first = cluster.wait_healthy()
    first.kill_host()
    survivors = [node for node in cluster.nodes if node is not first]
    second = cluster.wait_healthy(survivors)
    first.restart()  # rewinds and follows `second`
    cluster.wait_healthy()
    candidate = next(node for node in cluster.nodes if node not in (first, second))
    switched = pgha(cluster, "switchover", "--candidate", candidate.name, "--yes")
    cluster.check(switched.returncode == 0, switched.stdout + switched.stderr)
    third = cluster.wait_healthy()
    cluster.check(third is candidate, f"{third.name} leads, not {candidate.name}")
    third.kill_host()
    cluster.wait_healthy([node for node in cluster.nodes if node is not third])

    document = history_json(cluster, "--summary")
    entries = document["entries"]
    kinds = [entry["kind"] for entry in entries]
    cluster.check(kinds == ["failover", "switchover", "failover"], f"{kinds}: {entries}")
    cluster.check((document["failovers"], document["switchovers"]) == (2, 1), f"{document}")
    for entry in entries:
        outage = entry["write_outage_seconds"]
        # A lost lease counts one ttl before the key vanished, plus the election.
        low, high = (ttl, 3 * ttl) if entry["kind"] == "failover" else (0, 5)
        cluster.check(low <= outage < high, f"{entry['kind']} outage {outage} s: {entry}")
    total = sum(entry["write_outage_seconds"] for entry in entries)
    cluster.check(
        abs(document["write_outage_seconds"] - total) < 0.01, f"outages overlap? {document}"
    )
    window = document["window_seconds"]
    expected = 100 * (1 - total / window)
    cluster.check(abs(document["availability_percent"] - expected) < 0.5, f"{document}")
    cluster.check(0 < document["availability_percent"] < 100, f"{document}")

    text = pgha(cluster, "history", "--summary")
    cluster.check(text.returncode == 0, text.stderr)
    for line in ("availability:", "promotions: 2 failover(s), 1 switchover(s)", "(switchover, "):
        cluster.check(line in text.stdout, f"{line!r} missing from:\n{text.stdout}")

    # --since: a window that holds the last failover only (the switchover was at least a ttl
    # earlier: the second failover waited for the lease to expire).
    age = document_age(entries[-1])
    recent = history_json(cluster, "--since", f"{int(age) + 5}s")
    cluster.check([entry["term"] for entry in recent] == [entries[-1]["term"]], f"{recent}")
    everything = history_json(cluster, "--since", "1d")
    cluster.check(len(everything) == 3, f"{everything}")


def document_age(entry: dict[str, Any]) -> float:
    """Seconds since the entry's promotion, by this machine's clock (the agents' too)."""
    return time.time() - float(entry["at"])


def test_a_bad_since_exits_3_naming_the_accepted_forms(cluster: Cluster) -> None:
    for bad in ("3x", "30", "1h1d"):
        refused = pgha(cluster, "history", "--since", bad, "--summary")
        cluster.check(refused.returncode == 3, f"--since {bad}: exit {refused.returncode}")
        cluster.check("30d, 12h, 90m, 45s" in refused.stderr, refused.stderr)
