"""A decision: a stable code, one sentence for an on-call DBA, and an ordered plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgha.core.actions import Action, describe_plan
from pgha.core.model import Observation, Policy


@dataclass(frozen=True)
class Decision:
    code: str
    """The name of the rule that matched: the same word in logs, metrics, docs and tests."""
    reason: str
    actions: tuple[Action, ...] = ()

    def describe(self) -> str:
        return f"{self.code}: {self.reason} -> {describe_plan(self.actions)}"


Rule = Callable[[Observation, Policy], Decision | None]
"""A rule returns a Decision when it applies, None to let the next rule speak."""


def decision(code: str, reason: str, *actions: Action) -> Decision:
    return Decision(code, reason, tuple(actions))
