# ruff: noqa: RUF001, RUF002  # this module is about letters that look alike
"""Writing systems: which script a letter is in, and undoing evasions that mix scripts.

A look-alike letter is an evasion only in a word of the other script: a Cyrillic "а" in
"nаked" stands for the Latin "a", and a Latin "p" in "pacчлeнёнka" stands for the
Cyrillic "р". So each word is put into its own script, the one of its letters that have
no twin in the other; a word made only of twins takes the prompt's script. Korean typed
as loose jamo ("ㅅㅔㄱㅅㅣ") is composed into syllables ("섹시").
"""

from __future__ import annotations

import functools
import re
from collections import Counter

LATIN, CYRILLIC, GREEK, ARMENIAN = "latin", "cyrillic", "greek", "armenian"
ARABIC, HANGUL, KANA, HAN = "arabic", "hangul", "kana", "han"

_RANGES = (
    (0x0041, 0x024F, LATIN),
    (0x1E00, 0x1EFF, LATIN),
    (0x1D00, 0x1D7F, LATIN),  # small capitals
    (0x0370, 0x03FF, GREEK),
    (0x0400, 0x052F, CYRILLIC),
    (0x0530, 0x058F, ARMENIAN),
    (0x0600, 0x06FF, ARABIC),
    (0x0750, 0x077F, ARABIC),
    (0xFB50, 0xFDFF, ARABIC),
    (0xFE70, 0xFEFF, ARABIC),
    (0x1100, 0x11FF, HANGUL),
    (0x3130, 0x318F, HANGUL),
    (0xAC00, 0xD7AF, HANGUL),
    (0x3040, 0x30FF, KANA),
    (0x31F0, 0x31FF, KANA),
    (0xFF66, 0xFF9F, KANA),
    (0x3400, 0x4DBF, HAN),
    (0x4E00, 0x9FFF, HAN),
    (0xF900, 0xFAFF, HAN),
)
SPACELESS = frozenset({HAN, KANA})  # scripts written without spaces between words


@functools.lru_cache(maxsize=8192)
def script_of(ch: str) -> str | None:
    """The script of a letter; None for digits, punctuation and other scripts."""
    if not ch.isalpha():
        return None
    point = ord(ch)
    for first, last, script in _RANGES:
        if first <= point <= last:
            return script
    return None


def scripts_in(text: str) -> Counter[str]:
    return Counter(s for s in map(script_of, text) if s is not None)


# Letters of other scripts that pass for a Latin one in ordinary fonts (UTS #39
# skeletons): Cyrillic capitals and small letters, Greek ones, then Armenian ones.
# Capitals are mapped before case folding, which would turn the Greek capital Nu (an
# "N") into a small nu (a "v").
_LATIN_TWINS = (
    "Аa Вb Сc Еe Нh Іi Јj Кk Мm Оo Рp Ѕs Тt Хx Уy Ԍg Ԛq Ԝw "
    "аa вb гr еe кk мm нh оo пn рp сc тt уy хx ьb ѕs іi јj ԁd һh ԛq ԝw үy ӏl "
    "Αa Βb Εe Ζz Ηh Ιi Κk Μm Νn Οo Ρp Τt Υy Χx Ϲc Ϻm "
    "αa βb γy εe ηn ιi κk νv οo ρp τt υu χx ωw ϲc ϳj "
    "օo սu ոn հh ցg զq"
)
# Latin letters that pass for a Cyrillic one, the other way round.
_CYRILLIC_TWINS = "aа AА BВ cс CС eе EЕ HН kк KК MМ oо OО pр PР TТ xх XХ yу YУ"
TO_LATIN = str.maketrans({pair[0]: pair[1] for pair in _LATIN_TWINS.split()})
TO_CYRILLIC = str.maketrans({pair[0]: pair[1] for pair in _CYRILLIC_TWINS.split()})
_TWINS = frozenset(pair[0] for pair in (_LATIN_TWINS + " " + _CYRILLIC_TWINS).split())
_TWINNED_SCRIPTS = (LATIN, CYRILLIC, GREEK, ARMENIAN)
_LETTERS = re.compile(r"[^\W\d_]+")
_NOT_LATIN_TWINNED = re.compile(r"[\u0370-\u058f]")  # Greek, Cyrillic, Armenian letters


def one_script_per_word(text: str) -> str:
    """Each word with its look-alike letters put into the word's own script."""
    if not _NOT_LATIN_TWINNED.search(text):
        return text  # no letter of another script to put right
    fallback = _home_script(text) or LATIN
    return _LETTERS.sub(lambda m: _in_home_script(m.group(), fallback), text)


def _in_home_script(word: str, fallback: str) -> str:
    home = _home_script(word) or fallback
    if home == CYRILLIC:
        return word.translate(TO_CYRILLIC)
    if home == LATIN:
        return word.translate(TO_LATIN)
    return word  # Greek and Armenian words stay as written


def _home_script(text: str) -> str | None:
    """The script most of the letters without a twin are in, among the twinned ones."""
    counts = scripts_in("".join(ch for ch in text if ch not in _TWINS))
    ranked = [(counts[s], s) for s in _TWINNED_SCRIPTS if counts[s]]
    return max(ranked)[1] if ranked else None


# Korean: compatibility jamo (as typed one by one) to syllables.
_LEADS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_TAILS = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"
_FIRST_VOWEL, _LAST_VOWEL = 0x314F, 0x3163
_JAMO_RUN = re.compile(r"[\u3131-\u3163]{2,}")


def compose_jamo(text: str) -> str:
    return _JAMO_RUN.sub(lambda m: _syllables(m.group()), text)


def _syllables(jamo: str) -> str:
    out, i = [], 0
    while i < len(jamo):
        lead, vowel = jamo[i], jamo[i + 1] if i + 1 < len(jamo) else ""
        if lead not in _LEADS or not _is_vowel(vowel):
            out.append(lead)
            i += 1
            continue
        tail = jamo[i + 2] if i + 2 < len(jamo) else ""
        after = jamo[i + 3] if i + 3 < len(jamo) else ""
        takes_tail = tail in _TAILS.strip() and not _is_vowel(after)
        index = (_LEADS.index(lead) * 21 + ord(vowel) - _FIRST_VOWEL) * 28
        out.append(chr(0xAC00 + index + (_TAILS.index(tail) if takes_tail else 0)))
        i += 3 if takes_tail else 2
    return "".join(out)


def _is_vowel(ch: str) -> bool:
    return bool(ch) and _FIRST_VOWEL <= ord(ch) <= _LAST_VOWEL
