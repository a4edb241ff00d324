"""Failover benchmark: what each fault of the primary costs a client, on real local clusters.

Every repeat starts a fresh cluster (one etcd, three `pgha agent` processes, the
integration tests' fixtures), waits until it is healthy, runs the tests' monitor and writer
(an insert every ~20 ms through the multi-host DSN), injects one fault into the primary and
measures:

- write outage: the longest gap between two acknowledged writes over the whole run;
- lost writes: acknowledged inserts the new primary does not hold at the end;
- two read-write: seconds during which the monitor saw two nodes answer read-write;
- all streaming: seconds from the fault until every node still meant to run (all three
  for a Postgres-only crash, the two others otherwise) streams from one primary.

A frozen agent (or what is left of a frozen Postgres) is thawed, and a cut-off primary
healed, once the others are healthy; the writer and monitor keep running until all three
nodes are healthy again, so a primary that comes back writable is counted. Results go to
stdout as a markdown table per profile; progress and the logs of failed runs go to stderr.
Run as root.

`--footprint` measures an idle cluster instead (bench/footprint.py).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bench.footprint import measure_footprint
from bench.profiles import PROFILES, Profile, Workspace, log, median_min_max, require_root
from tests.fixtures.agent_node import AgentNode, send
from tests.fixtures.cluster import Cluster
from tests.fixtures.ops import pgha
from tests.fixtures.traffic import Monitor, traffic

Inject = Callable[[Cluster, AgentNode], list[AgentNode] | None]
"""Injects the fault into the primary; returns the members to wait for (None: all)."""
Recover = Callable[[Cluster, AgentNode], None]
GRAY_FAILURE_TIMEOUT_SECONDS = 5.0


def _others(cluster: Cluster, node: AgentNode) -> list[AgentNode]:
    return [other for other in cluster.nodes if other is not node]


def _host_crash(cluster: Cluster, old: AgentNode) -> list[AgentNode]:
    old.kill_host()
    return _others(cluster, old)


def _postgres_crash(cluster: Cluster, old: AgentNode) -> None:
    old.kill_postgres()


def _frozen_agent(cluster: Cluster, old: AgentNode) -> list[AgentNode]:
    old.freeze()
    return _others(cluster, old)


def _frozen_postgres(cluster: Cluster, old: AgentNode) -> list[AgentNode]:
    """SIGSTOP of the primary's postmaster and backends, not its agent: a gray failure that
    its agent must detect, kill and give the key up for after primary_unhealthy_timeout."""
    old.freeze_postgres()
    return _others(cluster, old)


def _thaw_postgres(cluster: Cluster, old: AgentNode) -> None:
    """SIGCONT whatever is left of the frozen Postgres (nothing, once its agent killed it)."""
    send(old.postgres_pids(), signal.SIGCONT)


def _short_unhealthy_timeout(cluster: Cluster, leader: AgentNode) -> None:
    value = f"primary_unhealthy_timeout={GRAY_FAILURE_TIMEOUT_SECONDS:g}"
    done = pgha(cluster, "config", "set", value)
    if done.returncode != 0:
        raise RuntimeError(f"could not set {value}:\n{done.stderr}")


def _etcd_cut(cluster: Cluster, old: AgentNode) -> list[AgentNode]:
    cluster.cut_from_etcd(old)
    return _others(cluster, old)


def _clean_stop(cluster: Cluster, old: AgentNode) -> list[AgentNode]:
    code = old.terminate()
    if code != 0:
        raise RuntimeError(f"the agent of {old.name} exited with {code} on SIGTERM")
    return _others(cluster, old)


def _switchover(cluster: Cluster, old: AgentNode) -> None:
    """A planned switchover to the best replica, through the operator's CLI."""
    done = pgha(cluster, "switchover", "--yes")
    if done.returncode != 0:
        raise RuntimeError(f"the switchover failed:\n{done.stdout}{done.stderr}")


def _synchronous_on(cluster: Cluster, leader: AgentNode) -> None:
    """synchronous_mode on, and wait until the leader names a sync standby."""
    done = pgha(cluster, "config", "set", "synchronous_mode=on")
    if done.returncode != 0:
        raise RuntimeError(f"could not turn synchronous mode on:\n{done.stderr}")

    def named() -> bool | None:
        record = cluster.etcd_get("sync") or {}
        return (record.get("leader") == leader.name and bool(record.get("standbys"))) or None

    cluster.wait_until(named, what="the leader names a sync standby", timeout=60)


@dataclass(frozen=True)
class Fault:
    name: str
    title: str
    inject: Inject
    recover: Recover | None = None
    netns: bool = False
    prepare: Recover | None = None
    """Run on the healthy cluster before the writes start (e.g. synchronous mode on)."""


FAULTS = {
    fault.name: fault
    for fault in (
        Fault("host-crash", "host crash (SIGKILL of everything)", _host_crash),
        Fault("postgres-crash", "Postgres-only crash", _postgres_crash),
        Fault("frozen-agent", "frozen agent (SIGSTOP)", _frozen_agent, lambda _, n: n.thaw()),
        Fault("etcd-cut", "primary cut off from etcd", _etcd_cut, Cluster.heal, netns=True),
        Fault("clean-stop", "clean stop (SIGTERM)", _clean_stop),
        Fault("switchover", "planned switchover (pgha switchover)", _switchover),
        Fault(
            "gray-failure",
            f"frozen postmaster and backends (primary_unhealthy_timeout "
            f"{GRAY_FAILURE_TIMEOUT_SECONDS:g} s)",
            _frozen_postgres,
            _thaw_postgres,
            prepare=_short_unhealthy_timeout,
        ),
        Fault(
            "sync-host-crash",
            "host crash, synchronous_mode on",
            _host_crash,
            prepare=_synchronous_on,
        ),
    )
}


@dataclass(frozen=True)
class RunResult:
    outage_seconds: float
    lost: int
    two_writable_seconds: float
    streaming_seconds: float


def two_writable_seconds(monitor: Monitor) -> float:
    """Time covered by monitor rounds that saw two read-write nodes (each round lasts until
    the next one starts)."""
    samples = monitor.samples
    return sum(
        (
            after.at - before.at
            for before, after in itertools.pairwise(samples)
            if len(before.primaries()) > 1
        ),
        0.0,
    )


def run_once(cluster: Cluster, fault: Fault, profile: Profile) -> RunResult:
    patience = 3 * profile.ttl + 60
    old = cluster.wait_healthy(timeout=patience + 60)
    if fault.prepare is not None:
        fault.prepare(cluster, old)
    with traffic(cluster, old) as running:
        running.wait_for_writes(20)
        fault_at = time.monotonic()
        members = fault.inject(cluster, old)
        cluster.wait_healthy(members, timeout=patience)
        streaming_seconds = time.monotonic() - fault_at
        running.wait_for_writes(10, since=fault_at)
        if fault.recover is not None:
            fault.recover(cluster, old)
            cluster.wait_healthy(timeout=patience)
            running.wait_for_writes(10, since=time.monotonic())
        report = running.report(f"{profile.name} {fault.name}", cluster.primary())
    return RunResult(
        outage_seconds=report.outage_seconds,
        lost=len(report.lost),
        two_writable_seconds=two_writable_seconds(running.monitor),
        streaming_seconds=streaming_seconds,
    )


@dataclass
class FaultResults:
    fault: Fault
    runs: list[RunResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def row(self) -> str:
        runs = f"{len(self.runs)}" + (f" ({len(self.failures)} failed)" if self.failures else "")
        cells = [
            self.fault.title,
            runs,
            median_min_max([r.outage_seconds for r in self.runs], 2),
            median_min_max([float(r.lost) for r in self.runs], 0),
            median_min_max([r.two_writable_seconds for r in self.runs], 2),
            median_min_max([r.streaming_seconds for r in self.runs], 2),
        ]
        return "| " + " | ".join(cells) + " |"


def bench_profile(
    profile: Profile, faults: list[Fault], repeats: int, workspace: Workspace
) -> list[FaultResults]:
    results = []
    for fault in faults:
        found = FaultResults(fault)
        for repeat in range(1, repeats + 1):
            name = f"{profile.name}-{fault.name}-{repeat}"
            log(f"--- {name}")
            try:
                # The fixtures print their reports; keep stdout for the tables.
                with (
                    contextlib.redirect_stdout(sys.stderr),
                    workspace.cluster(name, profile, netns=fault.netns) as cluster,
                ):
                    run = run_once(cluster, fault, profile)
            except (Exception, pytest.fail.Exception) as exc:
                found.failures.append(f"{name}: {str(exc).splitlines()[0]}")
                log(f"{name} failed: {exc}")
                continue
            found.runs.append(run)
            log(f"{name}: {run}")
        results.append(found)
    return results


def table(profile: Profile, repeats: int, results: list[FaultResults]) -> str:
    lines = [
        f"### Failover, {profile.heading()}, repeats: {repeats}",
        "",
        "Each cell: median / min / max.",
        "",
        "| fault | runs | write outage (s) | acknowledged writes lost | two read-write (s) "
        "| all streaming from new primary (s) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(found.row() for found in results),
    ]
    failures = [failure for found in results for failure in found.failures]
    if failures:
        lines += ["", "Failed runs:", *(f"- {failure}" for failure in failures)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.failover",
        description="Measure pgha failovers (or, with --footprint, an idle cluster) on fresh "
        "local clusters: one etcd and three agents. Run as root.",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        action="append",
        help="timer profile; repeat for several (default: fast)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per fault (default: 3)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated from {', '.join(FAULTS)} (default: all)",
    )
    parser.add_argument(
        "--footprint",
        action="store_true",
        help="measure an idle cluster's agents and etcd load instead",
    )
    parser.add_argument("--keep", action="store_true", help="keep every run's directory")
    args = parser.parse_args(argv)
    unknown = [name for name in args.faults.split(",") if name not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    require_root()
    profiles = [PROFILES[name] for name in args.profile or ["fast"]]
    workspace = Workspace(args.keep)
    try:
        for profile in profiles:
            if args.footprint:
                with contextlib.redirect_stdout(sys.stderr):
                    text = measure_footprint(profile, workspace)
            else:
                faults = [FAULTS[name] for name in args.faults.split(",")]
                text = table(
                    profile, args.repeats, bench_profile(profile, faults, args.repeats, workspace)
                )
            print(text + "\n", flush=True)
    finally:
        workspace.close()


if __name__ == "__main__":
    main()
