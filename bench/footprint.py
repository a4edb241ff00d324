"""Idle footprint: what an idle three-node cluster costs its hosts and its etcd.

After a warm-up, over a measuring window, per node: the resident memory (VmRSS, sampled
every few seconds, the largest sample) and the CPU time of the agent process and of its
guard, separately; and from etcd's own /metrics, the lease renewals, puts, transactions
and ranges per second the whole cluster causes.

CPU time is the sum over the process's threads of the scheduler's run time
(/proc/PID/task/TID/schedstat, nanoseconds). utime + stime from /proc/PID/stat count in
10 ms ticks, which over a 180 s window is +-0.003 s/min: as large as the changes worth
measuring at loop_wait 10. A thread that ends within the window takes its schedstat with
it, so when one does, the figure falls back to the ticks and the table says so.

etcd sends watch progress notifications every WATCH_PROGRESS_INTERVAL_SECONDS here, as in
production, not every half second as in the test suite: each notification wakes every
agent, and that is not what an operator's idle cluster costs.
"""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass, field

from bench.profiles import Profile, Workspace, log
from pgha.adapters.etcd_store import WATCH_PROGRESS_INTERVAL_SECONDS
from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster

WARM_UP_SECONDS = 30.0
WINDOW_SECONDS = 180.0
SAMPLE_SECONDS = 5.0
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
ETCD_COUNTERS = {
    "lease renewals/s": "etcd_debugging_lease_renewed_total",
    "puts/s": "etcd_mvcc_put_total",
    "txns/s": "etcd_mvcc_txn_total",
    "ranges/s": "etcd_mvcc_range_total",
}
"""All four exist in etcd 3.4; puts inside a txn count as puts."""


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process, in whole ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) are utime and stime; index 0 here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def thread_run_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each live thread of `pid` has run (the first field of its schedstat)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                found[int(tid)] = int(schedstat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    return found


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def etcd_counters(cluster: Cluster) -> dict[str, float]:
    with urllib.request.urlopen(f"{cluster.etcd.endpoint}/metrics", timeout=5) as answer:  # noqa: S310 - our own http endpoint
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ETCD_COUNTERS.values():
            values[name] = float(value)
    return values


@dataclass
class Watched:
    """One process of one node: the largest RSS seen and the CPU time at the window's start."""

    node: str
    what: str
    pid: int
    cpu_at_start: float
    threads_at_start: dict[int, int]
    rss_max_mib: float = 0.0
    precise: bool = True

    def sample(self) -> None:
        self.rss_max_mib = max(self.rss_max_mib, rss_mib(self.pid))

    def cpu_used(self) -> float:
        """CPU seconds since the window started: per-thread run time when every thread of
        the start is still there, otherwise (and then not `precise`) the tick count."""
        threads = thread_run_ns(self.pid)
        if set(self.threads_at_start) <= set(threads):
            start = self.threads_at_start
            return sum(ns - start.get(tid, 0) for tid, ns in threads.items()) / 1e9
        self.precise = False
        return cpu_seconds(self.pid) - self.cpu_at_start


def _processes(nodes: list[AgentNode]) -> list[Watched]:
    watched = []
    for node in nodes:
        guards = node.guard_pids()
        if len(guards) != 1:
            raise RuntimeError(f"{node.name} has guards {guards}, expected one")
        for what, pid in (("agent", node.agent_pid), ("guard", guards[0])):
            watched.append(Watched(node.name, what, pid, cpu_seconds(pid), thread_run_ns(pid)))
    return watched


@dataclass
class Footprint:
    roles: dict[str, str]
    watched: list[Watched] = field(default_factory=list)
    cpu_per_minute: dict[tuple[str, str], float] = field(default_factory=dict)
    etcd_rates: dict[str, float] = field(default_factory=dict)


def _measure(cluster: Cluster) -> Footprint:
    primary = cluster.wait_healthy(timeout=240)
    roles = {node.name: "primary" if node is primary else "replica" for node in cluster.nodes}
    log(f"healthy, primary {primary.name}; warming up {WARM_UP_SECONDS:g} s")
    time.sleep(WARM_UP_SECONDS)
    found = Footprint(roles, _processes(cluster.nodes))
    etcd_start, started = etcd_counters(cluster), time.monotonic()
    while (elapsed := time.monotonic() - started) < WINDOW_SECONDS:
        for process in found.watched:
            process.sample()
        time.sleep(min(SAMPLE_SECONDS, WINDOW_SECONDS - elapsed))
    etcd_end, elapsed = etcd_counters(cluster), time.monotonic() - started
    for process in found.watched:
        process.sample()
        found.cpu_per_minute[(process.node, process.what)] = process.cpu_used() * 60 / elapsed
    for label, metric in ETCD_COUNTERS.items():
        if metric in etcd_start and metric in etcd_end:
            found.etcd_rates[label] = (etcd_end[metric] - etcd_start[metric]) / elapsed
    return found


def _table(profile: Profile, found: Footprint) -> str:
    lines = [
        f"### Idle footprint, {profile.heading()}",
        "",
        f"{WARM_UP_SECONDS:g} s warm-up after the cluster is healthy, then a "
        f"{WINDOW_SECONDS:g} s window; RSS is the largest VmRSS sampled every "
        f"{SAMPLE_SECONDS:g} s. etcd sends watch progress notifications every "
        f"{WATCH_PROGRESS_INTERVAL_SECONDS:g} s, as pgha expects of a production etcd. "
        "CPU is the run time of the process's threads (schedstat, ns); a figure marked * "
        "counts 10 ms ticks instead, since a thread ended within the window.",
        "",
        "| node | role | agent RSS (MiB) | guard RSS (MiB) "
        "| agent CPU (s/min) | guard CPU (s/min) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rss = {(p.node, p.what): p.rss_max_mib for p in found.watched}
    cpu = {
        (p.node, p.what): f"{found.cpu_per_minute[(p.node, p.what)]:.4f}{'' if p.precise else '*'}"
        for p in found.watched
    }
    for node, role in sorted(found.roles.items()):
        lines.append(
            f"| {node} | {role} | {rss[(node, 'agent')]:.1f} | {rss[(node, 'guard')]:.1f} | "
            f"{cpu[(node, 'agent')]} | {cpu[(node, 'guard')]} |"
        )
    labels = list(found.etcd_rates)
    lines += [
        "",
        "etcd load of the whole idle cluster (from etcd's /metrics: "
        + ", ".join(f"`{ETCD_COUNTERS[label]}`" for label in labels)
        + "):",
        "",
        "| " + " | ".join(labels) + " |",
        "| " + " | ".join("---" for _ in labels) + " |",
        "| " + " | ".join(f"{found.etcd_rates[label]:.3f}" for label in labels) + " |",
    ]
    return "\n".join(lines)


def measure_footprint(profile: Profile, workspace: Workspace) -> str:
    """Start an idle cluster at `profile`, measure it, and return the markdown tables."""
    log(f"--- footprint {profile.name}")
    name = f"{profile.name}-footprint"
    progress = WATCH_PROGRESS_INTERVAL_SECONDS
    with workspace.cluster(name, profile, etcd_progress_notify_seconds=progress) as cluster:
        found = _measure(cluster)
    return _table(profile, found)
