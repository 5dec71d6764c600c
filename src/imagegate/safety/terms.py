"""The term stage: block and warn terms matched as whole words of the folded prompt.

The lists live in ``data/terms.yaml`` (or the file named by ``IMAGEGATE_SAFETY_TERMS_FILE``).
Each is folded like a prompt and compiled into one pattern, so a check is a few regex
searches over each reading of the prompt, whatever the length of the lists.

Word boundaries depend on the script (scripts.py):

- a term matches whole words, with a plural "s" or "es"; one ending in ``*`` is a stem,
  matching any word it begins (``décapit*``: "décapité", "décapitée");
- Korean terms are stems too, since particles join the word ("포르노를");
- Arabic terms may take the attached "and", "with", "for" and "the" in front
  (و ف ب ل ك، ال) and a short ending;
- Chinese and Japanese have no spaces, so their terms match anywhere: they are kept to
  compounds that have no innocent reading inside a longer word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from imagegate.safety.clauses import clause_reason, split_clauses
from imagegate.safety.normalize import NormalizedPrompt, fold_term, normalize
from imagegate.safety.scripts import ARABIC, HANGUL, SPACELESS, scripts_in
from imagegate.safety.verdict import CATEGORIES, Action, Verdict

_ALLOWED_MARK = "_"  # stands in for an allowed phrase; folding never leaves a "_"


@dataclass(frozen=True, slots=True)
class TermLists:
    block: Mapping[str, tuple[str, ...]]  # category -> terms
    ambiguous: Mapping[str, tuple[str, ...]]  # category -> terms with innocent senses too
    warn: tuple[str, ...]
    allow: tuple[str, ...]


def bundled_terms_path() -> Path:
    return Path(str(resources.files("imagegate.safety") / "data" / "terms.yaml"))


def load_term_lists(path: Path | None = None) -> TermLists:
    raw = yaml.safe_load((path or bundled_terms_path()).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with block, ambiguous, warn and allow")
    return TermLists(
        block=_by_category(raw.get("block") or {}),
        ambiguous=_by_category(raw.get("ambiguous") or {}),
        warn=_strings(raw.get("warn") or [], "warn"),
        allow=_strings(raw.get("allow") or [], "allow"),
    )


def _by_category(lists: Any) -> dict[str, tuple[str, ...]]:
    unknown = set(lists) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
    return {category: _strings(terms, category) for category, terms in lists.items()}


def _strings(items: Any, where: str) -> tuple[str, ...]:
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{where}: expected a list of strings")
    return tuple(items)


def whole_words(terms: Iterable[str]) -> re.Pattern[str]:
    """One pattern matching any term (folded) as whole words, by the rules of its script
    (see above); the term found is the pattern's only non-empty group."""
    kinds: dict[str, set[str]] = {}
    for term in terms:
        stem = term.endswith("*")
        folded = fold_term(term.removesuffix("*"))
        if folded:
            kinds.setdefault("stem" if stem else _kind(folded), set()).add(folded)
    if not kinds:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(_FORMS[kind].format(_alternatives(kinds[kind])) for kind in kinds))


_FORMS = {
    "word": r"(?<![^ ])({})(?:e?s)?(?![^ ])",
    "stem": r"(?<![^ ])({})[^ ]*",
    "anywhere": r"({})",
    "arabic": r"(?<![^ ])(?:[وفبلك]{{0,2}}(?:ال)?)({})[^ ]{{0,3}}(?![^ ])",
}


def _kind(folded: str) -> str:
    scripts = scripts_in(folded)
    if scripts.keys() & SPACELESS:
        return "anywhere"
    if scripts[HANGUL]:
        return "stem"
    return "arabic" if scripts[ARABIC] else "word"


def _alternatives(terms: set[str]) -> str:
    return "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))


def found_term(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group)


class TermMatcher:
    """Finds terms in the readings of a folded prompt, after taking out allowed phrases."""

    def __init__(self, lists: TermLists) -> None:
        self._allow = whole_words(lists.allow)
        self._block = {category: whole_words(terms) for category, terms in lists.block.items()}
        self._ambiguous = {c: whole_words(terms) for c, terms in lists.ambiguous.items()}
        self._warn = whole_words(lists.warn)

    def without_allowed(self, text: str, mark: str = _ALLOWED_MARK) -> str:
        """``text`` with each allowed phrase replaced by ``mark``."""
        return self._allow.sub(mark, text)

    def mask_allowed(self, folded: str, plain: str, mark: str) -> str:
        """``plain`` (the same words as ``folded``, in their own letters) with the words of
        each allowed phrase found in ``folded`` replaced by ``mark``."""
        words = plain.split(" ")
        if len(words) != folded.count(" ") + 1:
            return plain  # not word for word: leave it whole rather than guess
        for match in reversed(list(self._allow.finditer(folded))):
            start, end = match.span()
            whole = (start == 0 or folded[start - 1] == " ") and folded[end : end + 1] in ("", " ")
            if whole:
                first, last = folded.count(" ", 0, start), folded.count(" ", 0, end)
                words[first : last + 1] = [mark]
        return " ".join(words)

    def blocked(self, readings: Iterable[str]) -> dict[str, str]:
        """The categories of the block terms found, each with the first term found."""
        return self._find(self._block, readings)

    def ambiguous(self, readings: Iterable[str]) -> dict[str, str]:
        return self._find(self._ambiguous, readings)

    def warned(self, readings: Iterable[str]) -> list[str]:
        texts = [self.without_allowed(text) for text in readings]
        return sorted({found_term(m) for text in texts for m in self._warn.finditer(text)})

    def _find(
        self, patterns: Mapping[str, re.Pattern[str]], readings: Iterable[str]
    ) -> dict[str, str]:
        found: dict[str, str] = {}
        for text in map(self.without_allowed, readings):
            for category, pattern in patterns.items():
                match = pattern.search(text)
                if match and category not in found:
                    found[category] = found_term(match)
        return found


class TermStage:
    """Blocks a prompt with a block term; warns on a warn term.

    An ambiguous term blocks too, unless ``confirm_ambiguous`` is set: then it only warns,
    and the semantic stage, which sees the same term, decides on the whole prompt.
    """

    name = "terms"

    def __init__(self, matcher: TermMatcher, *, confirm_ambiguous: bool = False) -> None:
        self.matcher = matcher
        self.confirm_ambiguous = confirm_ambiguous

    @classmethod
    def from_file(cls, path: Path | None = None, *, confirm_ambiguous: bool = False) -> TermStage:
        return cls(TermMatcher(load_term_lists(path)), confirm_ambiguous=confirm_ambiguous)

    def check(self, prompt: NormalizedPrompt) -> Verdict:
        blocked = self.matcher.blocked(prompt.readings)
        ambiguous = self.matcher.ambiguous(prompt.readings)
        if not self.confirm_ambiguous:
            blocked = ambiguous | blocked
        if blocked:
            return self._verdict(Action.BLOCK, "term", blocked, prompt)
        if ambiguous:
            return self._verdict(Action.WARN, "ambiguous", ambiguous, prompt)
        warned = self.matcher.warned(prompt.readings)
        return Verdict(Action.WARN if warned else Action.ALLOW, reasons=_reasons("warn", warned))

    def _verdict(
        self, action: Action, kind: str, found: Mapping[str, str], prompt: NormalizedPrompt
    ) -> Verdict:
        # A block term is certain (score 1); an ambiguous one is no evidence by itself.
        score = 1.0 if action is Action.BLOCK else 0.0
        reasons = _reasons(kind, (f"{category}:{term}" for category, term in found.items()))
        clause = self._clause_with(prompt, set(found.values())) if action is Action.BLOCK else None
        return Verdict(
            action,
            frozenset(found),
            reasons + ((clause_reason(clause),) if clause else ()),
            {self.name: dict.fromkeys(found, score)},
        )

    def _clause_with(self, prompt: NormalizedPrompt, terms: set[str]) -> str | None:
        """The first clause that holds one of ``terms``, when the prompt has several."""
        clauses = split_clauses(prompt.original)
        if len(clauses) < 2:
            return None
        for clause in clauses:
            readings = normalize(clause).readings
            found = {*self.matcher.blocked(readings).values()}
            found |= {*self.matcher.ambiguous(readings).values()}
            if found & terms:
                return clause
        return None


def _reasons(kind: str, details: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"{kind}:{detail}" for detail in details)
