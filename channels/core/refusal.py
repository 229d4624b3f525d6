"""A refusal by a rule of the core (chat events, agent rooms): what the client's `nack` says."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Refusal:
    """An operation refused by a rule: the wire code, a safe message and details for the `nack`."""

    code: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)
