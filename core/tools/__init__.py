"""Coping tools: a personal safety plan, guided exercises (box breathing, 5-4-3-2-1 grounding, a thought
record) and a private journal, the same in every adapter.

    CopingTools          what adapters call: command(), press() for `tool:…` buttons, cancel(), pacing()
    suggest_exercise()   a Reply offering the exercises, with buttons; check-ins call it after a low mood
    exercise_buttons_for(words)  the fixed rule that lets a model reply carry an exercise button
    TOOL_COMMANDS        safetyplan, breathe, ground, reframe, journal, cancel

Key layout: core/tools/flow.py. Words: core/tools/data/*.yaml.
"""

from core.tools.exercises import BoxBreathing
from core.tools.service import TOOL_COMMANDS, CopingTools
from core.tools.suggest import exercise_buttons_for, suggest_exercise

__all__ = ["TOOL_COMMANDS", "BoxBreathing", "CopingTools", "exercise_buttons_for", "suggest_exercise"]
