"""The term stage: block and warn terms matched as whole words of the folded prompt.

The lists live in ``data/terms.yaml`` (or the file named by ``IMAGEGATE_SAFETY_TERMS_FILE``).
Each is folded like a prompt and compiled into one pattern, so a check is a few regex
searches over each reading of the prompt, whatever the length of the lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from imagegate.safety.normalize import NormalizedPrompt, fold_term
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
    """One pattern matching any term (folded) as whole words, with a plural ending."""
    folded = sorted({fold_term(term) for term in terms} - {""}, key=len, reverse=True)
    if not folded:
        return re.compile(r"(?!)")  # matches nothing
    alternatives = "|".join(re.escape(term) for term in folded)
    return re.compile(rf"(?<![^ ])({alternatives})(?:e?s)?(?![^ ])")


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

    def blocked(self, readings: Iterable[str]) -> dict[str, str]:
        """The categories of the block terms found, each with the first term found."""
        return self._find(self._block, readings)

    def ambiguous(self, readings: Iterable[str]) -> dict[str, str]:
        return self._find(self._ambiguous, readings)

    def warned(self, readings: Iterable[str]) -> list[str]:
        texts = [self.without_allowed(text) for text in readings]
        return sorted({m.group(1) for text in texts for m in self._warn.finditer(text)})

    def _find(
        self, patterns: Mapping[str, re.Pattern[str]], readings: Iterable[str]
    ) -> dict[str, str]:
        found: dict[str, str] = {}
        for text in map(self.without_allowed, readings):
            for category, pattern in patterns.items():
                match = pattern.search(text)
                if match and category not in found:
                    found[category] = match.group(1)
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
            return self._verdict(Action.BLOCK, "term", blocked)
        if ambiguous:
            return self._verdict(Action.WARN, "ambiguous", ambiguous)
        warned = self.matcher.warned(prompt.readings)
        return Verdict(Action.WARN if warned else Action.ALLOW, reasons=_reasons("warn", warned))

    def _verdict(self, action: Action, kind: str, found: Mapping[str, str]) -> Verdict:
        # A block term is certain (score 1); an ambiguous one is no evidence by itself.
        score = 1.0 if action is Action.BLOCK else 0.0
        return Verdict(
            action,
            frozenset(found),
            _reasons(kind, (f"{category}:{term}" for category, term in found.items())),
            {self.name: dict.fromkeys(found, score)},
        )


def _reasons(kind: str, details: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"{kind}:{detail}" for detail in details)
