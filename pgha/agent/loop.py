"""The agent process: the cycle on APScheduler, woken early by the etcd watch, the guard
beside it, and a clean stop on SIGTERM.

On SIGTERM a leader shuts Postgres down cleanly first (a clean shutdown ships all WAL to
the connected replicas) and only then releases the key, publishing the shutdown
checkpoint as the handoff's final LSN, so that a caught-up replica takes over at once
and none that lacks a byte can (DESIGN rule 7, traps 8). Never the other way round.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pgha.adapters.etcd_store import EtcdStore
from pgha.adapters.hooks import HookRunner
from pgha.adapters.pg_process import live_postmaster
from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_heartbeat import write_heartbeat
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.adapters.processes import ManagedProcess, spawn_guard
from pgha.adapters.store import LeaderClaim, Watch
from pgha.agent.cycle import Cycle, dynamic_config_seed
from pgha.agent.execute import Executor
from pgha.agent.fencing_deadline import boottime
from pgha.agent.guard import fence
from pgha.agent.liveness import Liveness
from pgha.agent.reload import reloaded_settings
from pgha.agent.runtime import Runtime
from pgha.agent.sd_notify import Notifier
from pgha.agent.wakeups import Wakeups
from pgha.api.node_report import read_report
from pgha.api.server import ApiServer
from pgha.core import actions as a
from pgha.core.decision import decision
from pgha.errors import PghaError
from pgha.settings import GUARD_LONGEST_SLEEP_SECONDS, Settings

log = logging.getLogger("pgha.agent")
JOB_ID = "ha-cycle"
MAIN_THREAD_NAP_SECONDS = 2.0
"""The main thread's longest sleep while it has something to do that often: repeat a
watchdog ping, or look for a postmaster's exit that no pidfd reports."""
IDLE_NAP_SECONDS = 10.0
"""Its longest sleep otherwise, and never more than half of ttl - safety_margin, so that it
looks at a deadline set meanwhile (a new term) well before that deadline even when the
cycle that set it is still busy. What it watches wakes it sooner: a signal, the
postmaster's exit, the fencing deadline, and the end of a cycle that changed the claim or
the postmaster (_wake_main_on_news)."""
RECHECK_SOON_SECONDS = 0.5
CATCH_UP_RECHECK_SECONDS = 0.05
RECHECK_SOON = frozenset(
    {
        # Decisions that wait for something expected within a second or two: look again
        # then, not a whole loop_wait later.
        "wait_for_fresh_positions",
        "wait_for_handoff",
        "wait_for_bootstrap",
        "wait_for_leader_checkpoint",
        "start_in_recovery",
        "wait_for_primary_start",
        "restart_crashed_primary",
        # Measures primary_unhealthy_timeout: a frozen primary already costs a probe
        # timeout per cycle, and a loop_wait on top would overshoot the timeout.
        "renew_while_primary_unhealthy",
    }
)


class Agent:
    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        """The file the settings came from, read again on SIGHUP (none: no reload)."""
        self.reloading = threading.Lock()
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = EtcdStore.from_settings(settings)
        self.control = PostgresControl(settings.postgres, node=settings.node)
        probe_timeout = min(3.0, settings.retry_timeout)
        self.probe = PostgresProbe(settings.postgres, timeout_seconds=probe_timeout)
        self.runtime = Runtime(
            name=settings.node,
            safety_margin_seconds=settings.safety_margin,
            deadline_file=settings.run_dir / f"{settings.node}.deadline",
            agent_pid=os.getpid(),
        )
        hooks = HookRunner.from_settings(settings.hooks)
        self.executor = Executor(
            store=self.store,
            control=self.control,
            probe=self.probe,
            runtime=self.runtime,
            dynamic_config_seed=dynamic_config_seed(settings),
            hooks=hooks,
            cluster_name=settings.cluster,
        )
        self.cycle = Cycle(
            settings=settings,
            store=self.store,
            probe=self.probe,
            executor=self.executor,
            runtime=self.runtime,
            hooks=hooks,
            heartbeat=lambda: write_heartbeat(self.control.session, timeout_seconds=probe_timeout),
        )
        self.api = ApiServer(
            settings.api.listen,
            lambda: read_report(self.settings, self.runtime, self.cycle),
            tls=settings.api.tls,
            auth=settings.api.auth,
        )
        self.scheduler = BackgroundScheduler(job_defaults={"misfire_grace_time": None})
        self.stopping = threading.Event()
        self.wakeups = Wakeups()
        self.guard: ManagedProcess | None = None
        self.watch: Watch | None = None
        self.loop_wait = settings.loop_wait
        self.fenced_deadline: float | None = None
        self.postmaster_seen = False
        self.main_watches: tuple[LeaderClaim | None, int | None] = (None, None)
        """The claim and postmaster pid the main thread last looked at."""
        self.liveness = Liveness(
            Notifier.from_environment(), self.runtime, lambda: self.cycle.policy
        )

    def run(self) -> None:
        self.api.start()  # first: an agent that cannot serve health checks exits at once
        self.runtime.disarm_guard()
        self._ensure_guard()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.config_path is not None:
            signal.signal(signal.SIGHUP, self._on_reload_signal)
        self.scheduler.add_job(
            self._tick,
            IntervalTrigger(seconds=self.loop_wait),
            id=JOB_ID,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(),
        )
        self.scheduler.start()
        try:
            self.watch = self.store.watch_leader(self.wake)
        except PghaError as exc:
            log.warning("no leader watch (%s): the loop runs on its timer alone", exc)
        log.info("agent %s started (pid %d)", self.settings.node, os.getpid())
        while not self.stopping.is_set():
            claim = self.runtime.claim  # before acting on it: see _wake_main_on_news
            self._enforce_deadline()
            postmaster_pid = self._notice_postmaster_exit()
            self.liveness.tick()
            self.main_watches = (claim, postmaster_pid)
            self.wakeups.sleep(self._until_next_check(postmaster_pid))
        self.wakeups.close()
        self.shutdown()

    def _until_next_check(self, postmaster_pid: int | None) -> float:
        """Sleep until the fencing deadline, but no longer than the nap."""
        policy = self.cycle.policy
        nap = min(IDLE_NAP_SECONDS, (policy.ttl_seconds - policy.safety_margin_seconds) / 2)
        if self.liveness.watchdog_seconds is not None or not self.wakeups.reports_exit_of(
            postmaster_pid
        ):
            nap = min(nap, MAIN_THREAD_NAP_SECONDS)
        deadline = self.runtime.fencing_deadline
        if self.runtime.claim is None or deadline is None or self.fenced_deadline == deadline:
            return nap
        return min(nap, max(deadline - boottime(), 0.0))

    def _wake_main_on_news(self) -> None:
        """From the cycle thread: wake the napping main thread when the cycle changed what
        it watches, the leader claim (whose deadline it enforces) or the postmaster (whose
        exit it reports at once). It records what it saw before acting on it, so a change
        it did not see always differs from the record."""
        postmaster = live_postmaster(self.settings.postgres.data_dir)
        seen = (self.runtime.claim, postmaster.pid if postmaster is not None else None)
        if seen != self.main_watches:
            self.wakeups.wake()

    def _notice_postmaster_exit(self) -> int | None:
        """A postmaster that dies wakes the cycle at once: the agent owns it, and need not
        wait out loop_wait to restart it (or to hand over). Returns the live one's pid."""
        postmaster = live_postmaster(self.settings.postgres.data_dir)
        running = postmaster is not None
        if self.postmaster_seen and not running:
            log.warning("the postmaster of %s exited", self.settings.postgres.data_dir)
            self.wake()
        self.postmaster_seen = running
        pid = postmaster.pid if postmaster is not None else None
        self.wakeups.watch_process(pid)
        return pid

    def _enforce_deadline(self) -> None:
        """A cycle can block on a slow etcd for seconds; the fencing deadline does not wait
        for it. The guard would fence too, but the agent does not leave it to the guard."""
        deadline = self.runtime.fencing_deadline
        if self.runtime.claim is None or deadline is None or boottime() < deadline:
            return
        if self.fenced_deadline == deadline:
            return
        self.fenced_deadline = deadline
        outcome = fence(self.settings.postgres.data_dir)
        log.warning("fencing deadline passed while the cycle was busy: %s", outcome)

    def wake(self) -> None:
        """The leader key changed: run the next cycle now rather than at the next tick."""
        self._wake_in(0)

    def _wake_in(self, seconds: float) -> None:
        if self.stopping.is_set():
            return
        job = self.scheduler.get_job(JOB_ID)
        if job is None:
            return
        soon = datetime.now() + timedelta(seconds=seconds)
        if job.next_run_time is None or soon < job.next_run_time.replace(tzinfo=None):
            job.modify(next_run_time=soon)

    def _tick(self) -> None:
        if self.stopping.is_set():
            return
        self._ensure_guard()
        try:
            made = self.cycle.run()
        except Exception:  # the loop must outlive any one cycle
            log.exception("the HA cycle failed; trying again at the next tick")
        else:
            self.liveness.cycle_completed(f"{made.code}: {made.reason}")
            if made.code == "catch_up_for_handoff":
                # Named by a switchover and a few bytes short: writes are stopped meanwhile.
                self._wake_in(CATCH_UP_RECHECK_SECONDS)
            elif made.code in RECHECK_SOON or self._must_give_key_back():
                self._wake_in(RECHECK_SOON_SECONDS)
        loop_wait = self.cycle.policy.loop_wait_seconds
        if loop_wait != self.loop_wait:
            self.loop_wait = loop_wait
            self.scheduler.reschedule_job(JOB_ID, trigger=IntervalTrigger(seconds=loop_wait))
        self._wake_main_on_news()

    def _must_give_key_back(self) -> bool:
        """The pre_promote hook failed after taking the key: give it back soon, not a whole
        loop_wait later, so that another candidate can lead."""
        claim = self.runtime.claim
        return claim is not None and claim.term == self.runtime.pre_promote_failed_term

    def _ensure_guard(self) -> None:
        alive = self.guard is not None and self.guard.alive()
        if not alive:
            if self.guard is not None:
                log.warning(
                    "the guard process exited (%s): starting a new one", self.guard.returncode
                )
            self.guard = spawn_guard(
                self.settings.postgres.data_dir,
                self.settings.run_dir / f"{self.settings.node}.deadline",
                GUARD_LONGEST_SLEEP_SECONDS,
                self.settings.run_dir / f"{self.settings.node}.guard.log",
            )
        self.runtime.guard_alive = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping.set()
        self.wakeups.wake()

    def _on_reload_signal(self, signum: int, frame: FrameType | None) -> None:
        # Loading takes a new interpreter (a second or so); the main thread must not wait.
        threading.Thread(target=self._reload, name="reload", daemon=True).start()

    def _reload(self) -> None:
        assert self.config_path is not None
        with self.reloading:  # two SIGHUPs in a row: one reload after the other
            log.info("received SIGHUP: reading %s again", self.config_path)
            settings = reloaded_settings(self.settings, self.config_path)
            if settings is not self.settings:
                self.settings = settings
                self.cycle.use_settings(settings)
                self.wake()

    def shutdown(self) -> None:
        """Stop cleanly: Postgres first, then the key, then our member record and the guard."""
        self.liveness.stopping()
        self.scheduler.shutdown(wait=True)
        if self.watch is not None:
            self.watch.stop()
        plan: list[a.Action] = [a.StopPostgres("fast")]
        if self.runtime.claim is not None:
            final_lsn = self._final_lsn_after_stop()
            plan = [a.StopPostgres("fast"), a.ReleaseLeader(final_lsn=final_lsn)]
        stop = decision("shutdown", "the agent is stopping: Postgres first, then the key", *plan)
        outcomes = self.executor.run(stop, None)
        for outcome in outcomes:
            log.info("shutdown: %s", outcome.describe())
        if all(outcome.ok for outcome in outcomes):
            self.runtime.lost_leadership()
            if self.runtime.lease is not None:
                try:
                    self.store.revoke_lease(self.runtime.lease)
                except PghaError as exc:
                    log.warning("could not revoke our lease: %s", exc)
        if self.guard is not None:
            self.guard.stop()
        self.api.stop()
        self.probe.close()
        self.control.session.close()
        self.store.close()
        log.info("agent %s stopped", self.settings.node)

    def _final_lsn_after_stop(self) -> int | None:
        """Stop cleanly now, so that the shutdown checkpoint is the handoff's final LSN."""
        try:
            self.control.stop(mode="fast")
            return self.control.read_control_data().checkpoint_lsn
        except PghaError as exc:
            log.warning("clean stop failed (%s): no final LSN for the handoff", exc)
            return None
