# ruff: noqa: RUF001, RUF002  # this module is about letters that look alike
"""Folding a prompt to the plain words a filter should see, whatever its spelling.

Every evasion this undoes keeps the words readable to a person but not to a naive filter:
look-alike letters from another script (scripts.py: a Cyrillic "а" in a Latin word, a
Latin "p" in a Cyrillic one), fullwidth and styled letters (NFKC), invisible characters
and the Arabic tatweel, Korean typed as loose jamo, leetspeak (``k1ll``, ``$ex``) and
letters split by spaces or punctuation (``g u n``, ``n.s.f.w``, ``肢 解``).

Two kinds of text come out, both lower case words joined by single spaces (so "whole
word" means "between spaces"):

- ``plain``: the words in their own letters, accents and all, as the model reads them;
- ``readings``: the same with accents and letter variants folded away (``nüde`` is
  ``nude``, ``gł0wa`` is ``glowa``, ``أ`` is ``ا``), which the term lists are matched on.
  Leetspeak's ``1`` reads as ``i`` or ``l``, so there are two readings, and a third
  keeps the digits as written; a filter checks them all.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from imagegate.safety.scripts import compose_jamo, one_script_per_word

_EMOJI = {"🔫": " gun ", "🔪": " knife ", "🗡": " dagger ", "💣": " bomb ", "🩸": " blood "}
_INVISIBLE = {"\u0640": None} | _EMOJI  # the tatweel only stretches an Arabic word
_CLEAN = str.maketrans(_INVISIBLE)
# Latin letter variants and Arabic letter forms, folded in the readings only.
_VARIANTS = str.maketrans(
    dict(
        pair
        for pair in zip(
            "ıȷɑɡɩɪɴʀʏᴀᴄᴅᴇᴊᴋᴍᴏᴘᴛᴜᴠᴡᴢǀøđłħأإآٱىة",
            "ijagiinryacdejkmoptuvwzlodlhاااايه",
            strict=True,
        )
    )
)

_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g"}
_LEET_SYMBOLS = {"@": "a", "$": "s"}  # stand for letters wherever they sit in a word
_LEET_INNER = {"!": "i", "|": "l"}  # stand for letters only between two letters
_ONE = ("i", "l")  # the two readings of "1"

# A number with a unit ("4k", "35mm", "1920s", "3d") is not leetspeak.
_NUMBER_WITH_UNIT = re.compile(
    r"\d+(?:[.,]\d+)?(?:st|nd|rd|th|s|k|d|p|x|mm|cm|m|km|px|fps|bit|hp|am|pm|kg|g|ft|mph|v|w)?"
)
_WORD = re.compile(r"[\w@$!|]+")
_SINGLE = r"(?:[^\W_]|[@$])"
# Three or more single characters split by one kind of separator: "g u n", "n.s.f.w".
_SPLIT_LETTERS = re.compile(
    rf"(?<![\w@$]){_SINGLE}(?P<sep>[\s.\-_*·•,'/~]{{1,3}}){_SINGLE}"
    rf"(?:(?P=sep){_SINGLE})+(?![\w@$])"
)
# Two or more characters of a script without spaces (or Korean syllables), each alone
# between spaces: "肢 解 现 场", "ヌ ー ド", "누 드".
_SYLLABLE = r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"
_SPLIT_SYLLABLES = re.compile(rf"(?<!\w){_SYLLABLE}(?: {_SYLLABLE})+(?!\w)")
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class NormalizedPrompt:
    """A prompt as typed, its folded readings (``text`` is the first), and its words in
    their own letters (``plain``). ``parts`` are texts the caller put into the prompt
    whole, such as a template's inputs: the semantic stage judges each as a clause."""

    original: str
    readings: tuple[str, ...]
    plain: str = ""
    parts: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.readings[0]


def normalize(text: str) -> NormalizedPrompt:
    cleaned = _join_split_letters(clean(text))
    spellings = [_unleet(cleaned, one) for one in _ONE]
    spellings.append(cleaned)  # as written: "ak47" is not leetspeak
    spellings = [one_script_per_word(spelling) for spelling in spellings]
    readings = tuple(dict.fromkeys(_words(_fold_letters(s)) for s in spellings))
    return NormalizedPrompt(text, readings, _words(spellings[0]))


def first_reading(text: str) -> NormalizedPrompt:
    """:func:`normalize` with only the first reading (and ``plain``): what the semantic
    stage reads of a clause, at a third of the work."""
    spelling = one_script_per_word(_unleet(_join_split_letters(clean(text)), _ONE[0]))
    return NormalizedPrompt(text, (_words(_fold_letters(spelling)),), _words(spelling))


def fold_term(term: str) -> str:
    """A term from a list, folded the way prompts are (without the leetspeak readings)."""
    return _words(_fold_letters(one_script_per_word(clean(term))))


def clean(text: str) -> str:
    """Compatibility forms (NFKC), invisible characters, loose jamo and look-alike letters
    undone, in lower case; accents and scripts kept."""
    # Jamo first: NFKC would compose them on its own, and take a final consonant for the
    # first of the next syllable.
    text = unicodedata.normalize("NFKC", compose_jamo(text)).translate(_CLEAN)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")  # zero-width etc.
    return one_script_per_word(text).casefold()


def _fold_letters(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", bare).translate(_VARIANTS)


def join_split_letters(text: str) -> str:
    """ "g u n" as "gun", "肢 解" as "肢解"."""
    return _SPLIT_SYLLABLES.sub(
        lambda m: m.group().replace(" ", ""), _SPLIT_LETTERS.sub(_join, text)
    )


_join_split_letters = join_split_letters


def _join(match: re.Match[str]) -> str:
    letters = match.group()[:: len(match.group("sep")) + 1]
    if letters[0] in "ai" and match.group("sep").isspace() and len(letters) > 3:
        return f"{letters[0]} {letters[1:]}"  # "a g u n": the article, then the word
    return letters


def _unleet(text: str, one: str) -> str:
    return _WORD.sub(lambda m: _unleet_word(m.group(), one), text)


def _unleet_word(word: str, one: str) -> str:
    if not any(ch.isalpha() for ch in word) or _NUMBER_WITH_UNIT.fullmatch(word):
        return word
    letters = []
    for i, ch in enumerate(word):
        if ch in _LEET_INNER and 0 < i < len(word) - 1 and word[i + 1].isalnum():
            letters.append(_LEET_INNER[ch])
        else:
            letters.append(_LEET.get(ch) or _LEET_SYMBOLS.get(ch) or (one if ch == "1" else ch))
    return "".join(letters)


def _words(text: str) -> str:
    return " ".join(_NOT_WORD.split(text)).strip()
