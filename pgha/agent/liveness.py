"""When the agent tells systemd it is alive: READY=1, WATCHDOG=1, STATUS and STOPPING=1.

READY=1 goes out once the first HA cycle has completed, so `systemctl start` returns when
the node knows its role, not when the process exists.

WATCHDOG=1 means "this agent's HA cycle is making progress, and if it stopped now, a
watchdog kill would still come in time". A ping is sent only when all of these hold:

- a cycle completed without raising within the progress window: `loop_wait +
  retry_timeout` on a leader (traps 11), which renews its lease once per cycle and cannot
  take much longer without nearing its fencing deadline anyway; `SLOW_CYCLE_SECONDS` on
  any other node, whose cycle may spend many minutes in pg_basebackup or pg_rewind (a
  watchdog kill in the middle of pg_rewind would ruin the data directory) and whose hang
  endangers nothing: a node without the key is not writable, and one that just lost it
  was fenced at its deadline by the main thread and the guard;
- on a leader: `now + WatchdogSec + WATCHDOG_KILL_SECONDS < fencing deadline`. A leader
  keeps serving while its renewals fail, until its deadline; a ping sent late in that
  window would let a hang right after it outlive the lease (traps 11a). With this rule the
  last ping of a leader whose renewals fail comes just early enough for the watchdog to
  stop it, and its Postgres, before the deadline; the agent fences itself there anyway.

The cycle thread pings when a cycle completes, and the main thread repeats the ping between
cycles under the same rules. A cycle that hangs therefore starves the watchdog once its
window has passed, whichever thread would have sent the ping; a frozen agent (SIGSTOP stops
every thread) sends nothing at all. The repeat matters on a leader: pinging only at cycle
ends would put its last allowed ping up to a whole `loop_wait` earlier, and the watchdog
would kill a primary whose etcd merely blinked long before its own deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pgha.agent.fencing_deadline import boottime
from pgha.agent.runtime import Runtime
from pgha.agent.sd_notify import Notifier
from pgha.core.model import Policy

log = logging.getLogger("pgha.agent")

WATCHDOG_KILL_SECONDS = 2.0
"""From the watchdog timeout to a dead Postgres: systemd's timer slack (250 ms) and the
SIGKILL of the agent and then of the unit's whole cgroup (WatchdogSignal=SIGKILL,
KillMode=mixed, FinalKillSignal=SIGKILL in systemd/pgha.service), with room to spare."""

SLOW_CYCLE_SECONDS = 900.0
"""How long a node without the leader key may go without completing a cycle: a clone or a
rewind (600 s each at most) and a restart of Postgres."""

PING_INTERVAL_SECONDS = 1.0
"""How often the main thread repeats a ping between cycles."""


class Liveness:
    """Decides, from the cycle's progress and the fencing deadline, what systemd is told."""

    def __init__(
        self,
        notifier: Notifier,
        runtime: Runtime,
        policy: Callable[[], Policy],
        clock: Callable[[], float] = boottime,
    ) -> None:
        self.notifier = notifier
        self.runtime = runtime
        self.policy = policy
        self.clock = clock
        self.ready = False
        self.stopped = False
        self.last_progress: float | None = None
        self.last_ping: float | None = None
        self._status: str | None = None
        self._warned_policy: Policy | None = None
        self._lock = threading.Lock()

    @property
    def watchdog_seconds(self) -> float | None:
        return self.notifier.watchdog_seconds

    def cycle_completed(self, status: str) -> None:
        """From the cycle thread, after a cycle that did not raise."""
        with self._lock:
            if self.stopped:
                return
            now = self.clock()
            self.last_progress = now
            if not self.ready:
                self.ready = self.notifier.ready(status) or not self.notifier.enabled
                self._status = status
            elif status != self._status:
                self._status = status
                self.notifier.status(status)
            self._ping_if_alive(now)

    def tick(self) -> None:
        """From the main thread, a few times a second: repeat the ping between cycles."""
        with self._lock:
            now = self.clock()
            if self.last_ping is not None and now - self.last_ping < PING_INTERVAL_SECONDS:
                return
            self._ping_if_alive(now)

    def stopping(self) -> None:
        """The agent is shutting down: say so, and never ping again (systemd now runs the
        stop timeout instead of the watchdog)."""
        with self._lock:
            if not self.stopped:
                self.stopped = True
                self.notifier.stopping("stopping: Postgres first, then the leader key")

    def why_not_ping(self, now: float) -> str | None:
        """None when a ping may go out now; otherwise the reason it may not."""
        watchdog = self.watchdog_seconds
        if watchdog is None:
            return "no watchdog watches this process"
        if self.stopped:
            return "the agent is stopping"
        if self.last_progress is None:
            return "no cycle has completed yet"
        policy = self.policy()
        runtime = self.runtime
        window = policy.loop_wait_seconds + policy.retry_timeout_seconds
        if runtime.claim is None:
            window = max(window, SLOW_CYCLE_SECONDS)
        if now - self.last_progress > window:
            return f"no cycle completed for {now - self.last_progress:.1f} s (window {window:g} s)"
        if runtime.claim is None:
            return None
        deadline = runtime.fencing_deadline
        if deadline is None:
            return "leader without a fencing deadline"
        self._warn_if_never_room(policy, watchdog)
        kill_at = now + watchdog + WATCHDOG_KILL_SECONDS
        if kill_at >= deadline:
            return f"a watchdog kill would come {kill_at - deadline:.1f} s after the deadline"
        return None

    def _ping_if_alive(self, now: float) -> None:
        if self.why_not_ping(now) is None and self.notifier.watchdog():
            self.last_ping = now

    def _warn_if_never_room(self, policy: Policy, watchdog: float) -> None:
        """A leader pings only while a kill would beat its deadline, which is ttl -
        safety_margin after a renewal: a WatchdogSec that does not fit lets systemd kill
        every leader one WatchdogSec after it renewed."""
        if policy == self._warned_policy:
            return
        self._warned_policy = policy
        room = policy.ttl_seconds - policy.safety_margin_seconds - WATCHDOG_KILL_SECONDS
        if watchdog >= room:
            log.error(
                "WatchdogSec %g s does not fit ttl %g s - safety_margin %g s - %g s to kill: "
                "systemd will kill this agent whenever it leads; lower WatchdogSec below %g s",
                watchdog,
                policy.ttl_seconds,
                policy.safety_margin_seconds,
                WATCHDOG_KILL_SECONDS,
                room,
            )
