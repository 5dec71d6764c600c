# ruff: noqa: RUF001, RUF002  # this module is about letters that look alike
"""Splitting a prompt into the pieces the semantic model judges one by one.

A harmful request hidden in a long, pleasant description ("prompt dilution") is a small
part of the prompt's meaning as a whole, and a large part of its own clause. So the
model reads the whole prompt and each clause, and the worst of them decides. Reading
each two neighbouring clauses as well (for "a man, holding a blade to a child's throat")
doubled the work and caught no more out of fold on the calibration half (96.7% against
97.3% recall at the same false positives), so it is not done.

Clauses end at the commas, semicolons, colons and full stops of every script the
pipeline reads (、。，；：！？ ، ؛) and at line breaks. A full stop, colon, "!" or "?"
ends one only before a space, so "n.s.f.w", "3.5" and "S!eg" stay whole. A clause with
fewer than :data:`MIN_LETTERS` letters ("8k", "J.") joins the one before it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from imagegate.safety.normalize import join_split_letters

MIN_LETTERS = 4
WHOLE = -1  # Window.index of the whole prompt
MAX_CLAUSES = 24  # more are merged in pairs: a 2,000-character prompt stays a few windows

_ENDS = re.compile(r"[,;、。，；！？،؛\n]+|[.:!?]+(?=\s|$)|\s[-–—]\s")


@dataclass(frozen=True, slots=True)
class Window:
    """A part of the prompt the model reads: the whole of it, or a clause."""

    text: str
    index: int  # of the clause; WHOLE for the whole prompt

    @property
    def whole(self) -> bool:
        return self.index == WHOLE


def split_clauses(text: str) -> list[str]:
    """The prompt's clauses, as typed (stripped), in order."""
    typed = join_split_letters(unicodedata.normalize("NFKC", text))  # "g, u, n" is a word
    clauses: list[str] = []
    for piece in _ENDS.split(typed):
        piece = piece.strip()
        if not piece:
            continue
        if clauses and _letters(piece) < MIN_LETTERS:
            clauses[-1] = f"{clauses[-1]}, {piece}"
        else:
            clauses.append(piece)
    while len(clauses) > MAX_CLAUSES:
        clauses = [", ".join(clauses[i : i + 2]) for i in range(0, len(clauses), 2)]
    return clauses


def windows(text: str) -> list[Window]:
    """The whole prompt first, then each clause when there are several."""
    clauses = split_clauses(text)
    whole = Window(text, WHOLE)
    if len(clauses) < 2:
        return [whole]
    return [whole, *(Window(clause, i) for i, clause in enumerate(clauses))]


CLAUSE_CHARS = 120  # of a clause named in a reason


def clause_reason(clause: str) -> str:
    """``clause:<the clause as typed>``, cut to :data:`CLAUSE_CHARS` characters."""
    cut = clause if len(clause) <= CLAUSE_CHARS else clause[:CLAUSE_CHARS] + "…"
    return f"clause:{cut}"


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)
