"""Haven's safety layer: crisis screening of user messages, fixed crisis replies with helplines, and the output
guard on model replies. Pure and deterministic: no Redis, no network, no language model.

    screen = SafetyScreen()            # rules + the trained classifier (loads lazily or in warm_up())
    assessment = screen.assess(text, recent=previous_user_messages)
    if assessment.level is RiskLevel.CRISIS: send crisis_reply(country, language)
    guard_reply(draft) on every model reply before it is sent
"""

from core.safety.assess import SafetyScreen
from core.safety.crisis import (
    CrisisAlert,
    alert_crisis_sent,
    crisis_reply,
    helplines_for,
    known_countries,
    normalize_country,
    resources_line,
)
from core.safety.guard import GuardResult, guard_reply
from core.safety.risk import RiskAssessment, RiskCategory, RiskLevel

__all__ = [
    "CrisisAlert",
    "GuardResult",
    "RiskAssessment",
    "RiskCategory",
    "RiskLevel",
    "SafetyScreen",
    "alert_crisis_sent",
    "crisis_reply",
    "guard_reply",
    "helplines_for",
    "known_countries",
    "normalize_country",
    "resources_line",
]
