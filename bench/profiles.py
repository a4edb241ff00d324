"""The timer profiles the benchmark runs at, and the small helpers both benchmarks share.

A profile seeds the cluster's timers at bootstrap. `slow` is what the issue asks for with
ttl 30 / loop_wait 10, but its retry_timeout 10 leaves no safety margin under the timer rule
(loop_wait + 2*retry_timeout + safety_margin <= ttl), so it runs retry_timeout 7 and
safety_margin 3 instead, and says so in every table it heads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.etcd import PROGRESS_NOTIFY_INTERVAL_SECONDS


@dataclass(frozen=True)
class Profile:
    name: str
    ttl: float
    loop_wait: float
    retry_timeout: float
    safety_margin: float
    note: str = ""

    def timers(self) -> dict[str, float]:
        return {
            "ttl": self.ttl,
            "loop_wait": self.loop_wait,
            "retry_timeout": self.retry_timeout,
            "safety_margin": self.safety_margin,
        }

    def heading(self) -> str:
        text = (
            f"profile `{self.name}`: ttl {self.ttl:g} / loop_wait {self.loop_wait:g} / "
            f"retry_timeout {self.retry_timeout:g} / safety_margin {self.safety_margin:g}"
        )
        return f"{text} ({self.note})" if self.note else text


PROFILES = {
    "fast": Profile("fast", ttl=10, loop_wait=1, retry_timeout=3, safety_margin=2),
    "slow": Profile(
        "slow",
        ttl=30,
        loop_wait=10,
        retry_timeout=7,
        safety_margin=3,
        note="retry_timeout 10 would leave safety_margin <= 0 under "
        "loop_wait + 2*retry_timeout + safety_margin <= ttl, so 7 and 3 instead",
    ),
}


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit(
            "run the benchmark as root: Postgres runs as the postgres user, partitions need netns"
        )


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def median_min_max(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    spread = (statistics.median(values), min(values), max(values))
    return " / ".join(f"{value:.{digits}f}" for value in spread)


class Workspace:
    """A 0755 directory under /tmp (the postgres user must reach the data directories),
    one fresh subdirectory per cluster; runs that failed keep theirs for the logs."""

    def __init__(self, keep: bool) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pgha-bench-", dir="/tmp"))
        self.base.chmod(0o755)
        self.keep = keep
        self.kept: list[Path] = []

    @contextlib.contextmanager
    def cluster(
        self,
        name: str,
        profile: Profile,
        netns: bool = False,
        etcd_progress_notify_seconds: float = PROGRESS_NOTIFY_INTERVAL_SECONDS,
    ) -> Iterator[Cluster]:
        directory = self.base / name
        cluster = start_cluster(
            directory,
            3,
            netns,
            etcd_progress_notify_seconds=etcd_progress_notify_seconds,
            **profile.timers(),
        )
        failed = True
        try:
            yield cluster
            failed = False
        finally:
            if failed:
                log(f"===== logs of {name}\n{cluster.diagnostics()}")
            cluster.stop_all()
            if failed or self.keep:
                self.kept.append(directory)
            else:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        if self.kept:
            log(f"kept the directories and logs of {len(self.kept)} runs under {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)
