"""Synchronous mode: how the leader changes its set of synchronous standbys, one safe step
per cycle (DESIGN rule 6, traps 5).

Two places name the standbys: `synchronous_standby_names` (what Postgres waits for) and
the `sync` key (who may be promoted after a failure). The order of changes keeps every
member of `sync` holding every acknowledged commit:
- to add B: list B in synchronous_standby_names, note the primary's flush LSN right after,
  and name B in `sync` only once it is synchronous and has flushed that far;
- to remove B: take it out of `sync` first, then out of synchronous_standby_names.
synchronous_standby_names lists exactly the standbys waited for, all of them required
(`FIRST n (...)` with n = their count), never `*`; with none, `strict` lists a placeholder
that no standby matches (writes block), `on` lists nothing (writes go on, degraded).
"""

from __future__ import annotations

import re

from pgha.core.actions import Action, SetSyncStandbys, UpdateSync
from pgha.core.model import Observation, Policy, StandbyFeed, format_lsn

PLACEHOLDER = "pgha_no_sync_standby"
"""The name strict mode waits for when it has no standby: no member can be called this
(member names are checked against it), so writes block until a real standby is listed."""
SYNC_STATES = ("sync", "quorum")
_OURS = re.compile(r'^FIRST (\d+) \(((?:"[A-Za-z0-9_.-]+"(?:, )?)+)\)$')


def render_names(names: tuple[str, ...], strict: bool) -> str:
    """The synchronous_standby_names value for exactly these standbys."""
    if not names:
        names = (PLACEHOLDER,) if strict else ()
    if not names:
        return ""
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"FIRST {len(names)} ({quoted})"


def parse_names(value: str | None) -> tuple[str, ...] | None:
    """The names of a value `render_names` wrote (the placeholder included); None for any
    other value, which pgha then replaces."""
    if value is None or value == "":
        return ()
    found = _OURS.match(value)
    if found is None:
        return None
    names = tuple(re.findall(r'"([^"]+)"', found.group(2)))
    return names if int(found.group(1)) == len(names) else None


Step = tuple[Action, str]


def sync_step(obs: Observation, policy: Policy) -> Step | None:
    """As a healthy leader: the next change of the sync set, and why; None when settled."""
    cluster, local = obs.cluster, obs.local
    assert cluster is not None
    me, term = obs.node.name, obs.node.claimed_term
    mode = policy.synchronous_mode
    strict = mode == "strict"
    if mode == "off":
        return _step_off(obs)
    record = cluster.sync
    if record is None or (record.leader, record.term) != (me, term):
        return UpdateSync(()), (
            f"synchronous_mode {mode}: recording this leader's own sync set (term {term}), "
            "empty until a standby has caught up"
        )
    if local.sync_names is None:
        return SetSyncStandbys(record.standbys, strict=strict), (
            "synchronous_standby_names holds a value pgha did not write: setting it to "
            "exactly the sync standbys"
        )
    usable = _usable_standbys(obs)
    return (
        _step_out(obs, mode, usable)
        or _step_in(obs, policy, usable)
        or _step_placeholder(obs, mode)
    )


def _usable_standbys(obs: Observation) -> dict[str, StandbyFeed]:
    """Standbys streaming from this primary that are members and not tagged nosync."""
    cluster = obs.cluster
    assert cluster is not None
    usable = {}
    for feed in obs.local.standbys:
        member = cluster.members.get(feed.name)
        if feed.streaming and member is not None and not member.tags.nosync:
            usable[feed.name] = feed
    return usable


def _step_off(obs: Observation) -> Step | None:
    assert obs.cluster is not None
    if obs.cluster.sync is not None:
        return UpdateSync(None), "synchronous_mode is off: deleting the sync key"
    if obs.local.sync_names:
        return SetSyncStandbys((), strict=False), (
            "synchronous_mode is off: no longer waiting for any standby"
        )
    return None


def _step_out(obs: Observation, mode: str, usable: dict[str, StandbyFeed]) -> Step | None:
    """Standbys that left: out of `sync` first (in strict only once another sync standby
    streams: the one left still holds every acknowledged commit), then out of the names."""
    assert obs.cluster is not None
    assert obs.cluster.sync is not None
    current = obs.cluster.sync.standbys
    gone = [name for name in current if name not in usable]
    if gone and (mode == "on" or len(gone) < len(current)):
        return UpdateSync(tuple(n for n in current if n not in gone)), (
            f"{', '.join(gone)} no longer streams from this primary: out of `sync` first, "
            "then out of synchronous_standby_names"
        )
    names = _listed(obs)
    stale = [n for n in names if n not in current and n not in usable]
    missing = [n for n in current if n not in names]
    if stale or missing:
        wanted = tuple(n for n in names if n not in stale) + tuple(missing)
        return SetSyncStandbys(wanted, strict=mode == "strict"), (
            f"synchronous_standby_names lists {', '.join(names) or 'nobody'}, the sync set is "
            f"{', '.join(current) or 'empty'}: waiting for {', '.join(wanted) or 'nobody'}"
        )
    return None


def _step_in(obs: Observation, policy: Policy, usable: dict[str, StandbyFeed]) -> Step | None:
    """A listed standby that caught up joins `sync`; below the count, list another one."""
    assert obs.cluster is not None
    assert obs.cluster.sync is not None
    strict = policy.synchronous_mode == "strict"
    current = obs.cluster.sync.standbys
    names = _listed(obs)
    for name in names:
        if name in current:
            continue
        baseline = obs.node.sync_baselines.get(name)
        if baseline is None:
            return SetSyncStandbys(names, strict=strict), (
                f"no flush baseline for {name} (agent restarted?): taking it again"
            )
        feed = usable.get(name)
        flushed = feed.flush_lsn if feed is not None else None
        if feed is not None and feed.sync_state in SYNC_STATES and (flushed or 0) >= baseline:
            return UpdateSync((*current, name)), (
                f"{name} is synchronous and has flushed {format_lsn(flushed)}, past "
                f"{format_lsn(baseline)}: naming it in `sync`"
            )
    if len([n for n in names if n in usable]) >= policy.synchronous_node_count:
        return None
    members = obs.cluster.members
    candidates = sorted(
        (n for n in usable if n not in names), key=lambda n: (members[n].tags.nofailover, n)
    )
    if not candidates:
        return None
    return SetSyncStandbys((*names, candidates[0]), strict=strict), (
        f"adding {candidates[0]} to synchronous_standby_names; it joins `sync` once it has "
        "flushed this primary's current WAL"
    )


def _step_placeholder(obs: Observation, mode: str) -> Step | None:
    listed = obs.local.sync_names or ()
    names = _listed(obs)
    if mode == "strict" and not names and PLACEHOLDER not in listed:
        return SetSyncStandbys((), strict=True), (
            "synchronous_mode strict with no standby: writes wait until one is synchronous"
        )
    if mode != "strict" and PLACEHOLDER in listed:
        return SetSyncStandbys(names, strict=False), (
            "synchronous_mode on: dropping the strict placeholder"
        )
    return None


def _listed(obs: Observation) -> tuple[str, ...]:
    return tuple(name for name in obs.local.sync_names or () if name != PLACEHOLDER)


def promotion_sync_reset(policy: Policy) -> tuple[Action, ...]:
    """Before a promotion in synchronous mode: wait for nobody yet (on), or block writes
    until a standby is synchronous (strict) — never for names inherited from the old
    primary's data directory (traps 5e)."""
    if policy.synchronous_mode == "off":
        return ()
    return (SetSyncStandbys((), strict=policy.synchronous_mode == "strict"),)


def sync_summary(obs: Observation, policy: Policy) -> str:
    """One phrase for a settled leader's reason: whom writes wait for."""
    mode = policy.synchronous_mode
    record = obs.cluster.sync if obs.cluster is not None else None
    standbys = record.standbys if record is not None else ()
    if mode == "off":
        return ""
    if standbys:
        return f"; synchronous_mode {mode}, sync standbys: {', '.join(standbys)}"
    if mode == "strict":
        return "; synchronous_mode strict with no sync standby: writes wait"
    return "; synchronous_mode on but no standby is synchronous: degraded to asynchronous"
