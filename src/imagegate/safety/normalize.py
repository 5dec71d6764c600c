"""Folding a prompt to the plain words a filter should see, whatever its spelling.

Every evasion this undoes keeps the words readable to a person but not to a naive filter:
look-alike letters from other scripts (UTS #39 confusables, a compact table of the
Cyrillic, Greek and Latin look-alikes of ASCII letters), fullwidth and styled letters
(NFKC), invisible characters, leetspeak (``k1ll``, ``$ex``) and letters split by spaces or
punctuation (``g u n``, ``n.s.f.w``). The result is lower case words joined by single
spaces, so "whole word" means "between spaces". Leetspeak's ``1`` reads as ``i`` or ``l``,
so there are two readings, and a filter checks both.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Look-alikes and the ASCII letter each imitates (UTS #39 skeletons, restricted to the
# characters that pass for a Latin letter in ordinary fonts), as "look-alike letter" pairs:
# Cyrillic capitals and small letters, Greek capitals and small letters, Latin small
# capitals and other Latin look-alikes, then Armenian ones. Capitals are mapped before case
# folding, which would turn the Greek capital Nu (an "N") into a small nu (a "v").
_LOOK_ALIKES = (
    "Аa Вb Сc Еe Нh Іi Јj Кk Мm Оo Рp Ѕs Тt Хx Уy Ԍg Ԛq Ԝw "  # noqa: RUF001
    "аa вb гr еe кk мm нh оo пn рp сc тt уy хx ьb ѕs іi јj ԁd һh ԛq ԝw үy ӏl "  # noqa: RUF001
    "Αa Βb Εe Ζz Ηh Ιi Κk Μm Νn Οo Ρp Τt Υy Χx Ϲc Ϻm "  # noqa: RUF001
    "αa βb γy εe ηn ιi κk νv οo ρp τt υu χx ωw ϲc ϳj "  # noqa: RUF001
    "ıi ȷj ɑa ɡg ɩi ɪi ɴn ʀr ʏy ᴀa ᴄc ᴅd ᴇe ᴊj ᴋk ᴍm ᴏo ᴘp ᴛt ᴜu ᴠv ᴡw ᴢz ǀl øo đd łl ħh "  # noqa: RUF001
    "օo սu ոn հh ցg զq"  # noqa: RUF001 - Armenian
)
_EMOJI = {"🔫": " gun ", "🔪": " knife ", "🗡": " dagger ", "💣": " bomb ", "🩸": " blood "}
CONFUSABLES = str.maketrans({pair[0]: pair[1] for pair in _LOOK_ALIKES.split()} | _EMOJI)

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
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class NormalizedPrompt:
    """A prompt as typed, and its folded readings (``text`` is the first)."""

    original: str
    readings: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.readings[0]


def normalize(text: str) -> NormalizedPrompt:
    folded = _join_split_letters(_fold(text))
    readings = [_words(_unleet(folded, one)) for one in _ONE]
    readings.append(_words(folded))  # as written: "ak47" is not leetspeak
    return NormalizedPrompt(text, tuple(dict.fromkeys(readings)))


def fold_term(term: str) -> str:
    """A term from a list, folded the way prompts are (without the leetspeak readings)."""
    return _words(_fold(term))


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")  # zero-width etc.
    text = text.translate(CONFUSABLES).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def _join_split_letters(text: str) -> str:
    return _SPLIT_LETTERS.sub(_join, text)


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
