"""The typed result of a safety screen: how much risk a message shows, of which kinds, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RiskLevel(StrEnum):
    """How the dialog manager must answer. Ordered: NONE < CONCERN < CRISIS."""

    NONE = "none"
    CONCERN = "concern"
    CRISIS = "crisis"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {RiskLevel.NONE: 0, RiskLevel.CONCERN: 1, RiskLevel.CRISIS: 2}


def max_level(*levels: RiskLevel) -> RiskLevel:
    """The most serious of the given levels (NONE when given none)."""
    return max(levels, key=lambda level: level.rank, default=RiskLevel.NONE)


class RiskCategory(StrEnum):
    """What kind of risk a message shows."""

    SUICIDE = "suicide"
    SELF_HARM = "self_harm"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE = "abuse"  # danger from someone else
    MEDICAL_EMERGENCY = "medical_emergency"  # overdose, poisoning, injury needing help now
    EATING_DISORDER = "eating_disorder"
    SUBSTANCE = "substance"


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """One screen's verdict. `reasons` holds rule and exemplar ids only, never message text."""

    level: RiskLevel
    categories: frozenset[RiskCategory] = frozenset()
    reasons: tuple[str, ...] = ()

    @property
    def is_crisis(self) -> bool:
        return self.level is RiskLevel.CRISIS

    @property
    def needs_care(self) -> bool:
        """Concern or crisis: the reply carries helplines in some form."""
        return self.level is not RiskLevel.NONE


NO_RISK = RiskAssessment(RiskLevel.NONE)
