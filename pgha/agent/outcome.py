"""What running one action gave: ok with a detail, or the failure that stopped the plan."""

from __future__ import annotations

from dataclasses import dataclass

from pgha.core import actions as a
from pgha.errors import PghaError


class ActionFailed(PghaError):
    """An action could not be carried out; the rest of the plan is skipped."""


@dataclass(frozen=True)
class Outcome:
    action: a.Action
    ok: bool
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.action.describe()}: {'ok' if self.ok else 'FAILED'}"
        return f"{text} ({self.detail})" if self.detail else text
