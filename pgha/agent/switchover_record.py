"""The `switchover` key: what `pgha switchover` writes and the leaders advance.

{"id", "from", "to", "at" (ISO 8601 with a zone, or null), "state" (pending,
handing_over, done, failed), "candidate", "term", "reason", "requested_at"}.

An unreadable request is reported and ignored: a switchover is an operator's wish, and
ignoring a garbled one is the safe reading (nothing changes). A request must carry the
`id` and `state` the CLI always writes, so that a stray JSON object is not mistaken for
"switch over to anyone, now".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pgha.adapters.store import MAX_TEXT, Record, Value, excerpt
from pgha.core.model import SwitchoverRequest, SwitchoverState


def iso_time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> float:
    """ISO 8601 with a time zone to epoch seconds; ValueError says what is wrong."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{excerpt(text)} is not an ISO 8601 time (e.g. 2026-11-29T14:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{excerpt(text)} has no time zone: add one, e.g. +00:00 or Z")
    return moment.timestamp()


def parse_switchover(value: Value | None, problems: list[str]) -> SwitchoverRequest | None:
    if value is None:
        return None
    if not isinstance(value, Record):
        problems.append(f"switchover request ignored: {value.what()}")
        return None
    try:
        return _request(value.data, value.mod_revision)
    except (ValueError, TypeError) as exc:
        problems.append(f"switchover request ignored: {exc}")
        return None


def _request(data: Any, mod_revision: int) -> SwitchoverRequest:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if not data.get("id") or "state" not in data:
        raise ValueError("needs the id and state that `pgha switchover` writes")
    at = data.get("at")
    term = data.get("term")
    if term is not None and (not isinstance(term, int) or isinstance(term, bool)):
        raise ValueError(f"term must be an integer, got {excerpt(term)}")
    return SwitchoverRequest(
        id=_text(data, "id") or "?",
        from_node=_text(data, "from"),
        to_node=_text(data, "to"),
        at=_time(at),
        state=_state(data["state"]),
        candidate=_text(data, "candidate"),
        term=term,
        mod_revision=mod_revision,
    )


def _state(value: Any) -> SwitchoverState:
    try:
        return SwitchoverState(value)
    except ValueError:
        known = ", ".join(state.value for state in SwitchoverState)
        raise ValueError(f"state must be one of {known}, got {excerpt(value)}") from None


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return value
    raise ValueError(
        f"{name} must be a string of at most {MAX_TEXT} characters, got {excerpt(value)}"
    )


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"at must be an ISO 8601 time or null, got {excerpt(value)}")
    return parse_time(value)
