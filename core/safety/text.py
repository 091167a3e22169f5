"""Text normalisation for the safety screen: one canonical lower-case form that rules and exemplars share.

People in distress type fast and disguise words ("k1ll mys3lf", "s*icide", "k i l l"), so the screen matches
against a folded form: accents stripped, apostrophes dropped ("don't" -> "dont"), look-alike digits turned back
into letters inside words, spaced-out letters joined, and sentence ends kept as " | " so rules can tell clauses
apart.
"""

from __future__ import annotations

import re
import unicodedata

CLAUSE_BREAK = " | "

_ZERO_WIDTH = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_APOSTROPHES = re.compile("[\u2018\u2019\u02bc\u0060\u00b4']")
# Emoji that change meaning: laughing ones mark hyperbole, object ones name means.
_EMOJI_WORDS = {
    "\U0001f602": " lol ",  # face with tears of joy
    "\U0001f923": " lol ",  # rolling on the floor laughing
    "\U0001f480": " lol ",  # skull ("I'm dead" = laughing)
    "\U0001f629": " ugh ",  # weary face: exasperation
    "\U0001f52a": " knife ",
    "\U0001f48a": " pills ",
    "\U0001faa2": " rope ",
    "\U0001f52b": " gun ",
}
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "@": "a", "$": "s", "!": "i"})
_LEET_WORD = re.compile(r"\b(?=\w*[a-z])[a-z0-9@$!]*[0-9@$!][a-z0-9@$!]*[a-z][a-z0-9@$!]*\b|\b[a-z]+[0-9@$!]+[a-z]*\b")
_SPACED = re.compile(r"\b(?:[a-z][ .\-_]){3,}[a-z]\b")
_REPEATS = re.compile(r"([a-z])\1{2,}")
_CLAUSE_END = re.compile(r"[.!?;:\n\r]+|\s-\s|\s[-–—]+\s")
_NOT_WORD = re.compile(r"[^a-z0-9*| ]+")
_SPACES = re.compile(r"\s+")


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    # Numbers with a unit ("20mg", "3am") stay numbers: only words that are mostly letters are decoded.
    letters = sum(ch.isalpha() for ch in word)
    if letters < 2 or re.fullmatch(r"\d+[a-z]{1,3}", word):
        return word
    return word.translate(_LEET)


def normalize(text: str) -> str:
    """Fold `text` to the canonical form the rules and exemplars are written in."""
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_WIDTH.sub("", text)
    for emoji, word in _EMOJI_WORDS.items():
        text = text.replace(emoji, word)
    text = text.casefold()
    text = _APOSTROPHES.sub("", text)
    text = _strip_accents(text)
    text = _LEET_WORD.sub(_unleet, text)
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_]", "", m.group(0)), text)
    text = _REPEATS.sub(r"\1\1", text)
    text = _CLAUSE_END.sub(CLAUSE_BREAK, text)
    text = _NOT_WORD.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return f" {text} "
