"""Which of the screen's five languages a message is most likely written in.

The classifier's encoder (all-MiniLM-L6-v2) was trained on English: it reads Spanish, German, French and Portuguese
through word pieces, and its scores there are calibrated differently. The screen uses this guess only to pick the
classifier's crisis threshold for the message; it never changes what the rules do or what language Haven replies in.

A count of very common words is enough for that: a short message with none of them counts as English, where the
classifier reads best. Deterministic, no model, about 30 µs for a sentence on this project's 2-core box.
"""

from __future__ import annotations

from core.safety.text import normalize

ENGLISH = "en"

# Common words of each language, in normalised form (lower case, accents stripped, apostrophes dropped: "j'ai" ->
# "jai", "não" -> "nao"). The commonest words they share ("a", "de", "e", "no", "so") are left out: they say
# little, and the rest of the message says more.
_COMMON_WORDS: dict[str, str] = {
    "en": "i the and to my is it of in im that for you this just but not have was with be its dont cant like at "
          "what feel get all they he she we are ive been am can do know want really about if or out would",
    "es": "que el la los las y en se mi mis por con para una es lo pero ya muy todo estoy tengo q pq porque cuando "
          "como mas hoy nada quiero esta eso solo tambien vez sin del al ahora siento ni algo mucho estar",
    "pt": "que o os do da dos das em um uma pra para com eu meu minha voce vc to ta ja mais hoje nada quero estou "
          "tenho isso tambem ele ela mas muito porque nao sei sou foi bem agora tudo ser quando pode posso esse "
          "essa hj num numa dele dela",
    "fr": "je la le et les des est pas que un une du mon ma mes pour avec sur ce ca suis jai ai tout plus mais trop "
          "bien vraiment quoi cest nous vous jsp mdr ptdr tres fait il elle au aux moi sais ne",
    "de": "ich und die der das nicht ist mit mich mir mein meine ein eine zu auf es hab habe bin war wie was aber "
          "auch noch schon jetzt heute einfach nur mehr wenn dass weil kann ne grad gerade nix nichts bei",
}


_COMMON = {lang: frozenset(words.split(" ")) for lang, words in _COMMON_WORDS.items()}


def guess_language(text: str) -> str:
    """"en", "es", "pt", "fr" or "de": the language whose common words the message uses most (English on a tie)."""
    words = normalize(text).split()
    counts = {lang: sum(word in common for word in words) for lang, common in _COMMON.items()}
    best = max(counts, key=lambda lang: (counts[lang], lang == ENGLISH))
    return best if counts[best] > counts[ENGLISH] else ENGLISH
