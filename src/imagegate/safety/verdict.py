"""What a safety stage decides, and how the decisions of several stages combine.

Actions are ordered, ``allow < warn < review < block``, and the strictest one wins:
:func:`combine` takes the highest action, the categories of the stages that chose it, and
every stage's reasons, scores and timings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from imagegate.safety.normalize import NormalizedPrompt

CATEGORIES = ("violence", "gore", "sexual", "weapons", "hate")


class Action(IntEnum):
    ALLOW = 0  # nothing found
    WARN = 1  # allowed, with a note (a warn term such as "injury")
    REVIEW = 2  # held: a person decides
    BLOCK = 3  # refused

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Verdict:
    """One stage's decision, or the pipeline's combined one.

    ``reasons`` are stable codes such as ``term:weapons:gun`` or ``semantic:gore``.
    ``scores`` holds each stage's scores by category (``{"semantic": {"gore": 0.41}}``),
    and ``timings_ms`` how long each stage took. ``language`` is the prompt's (ISO 639-1,
    or ``und``), set by the pipeline.
    """

    action: Action = Action.ALLOW
    categories: frozenset[str] = frozenset()
    reasons: tuple[str, ...] = ()
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    language: str = ""

    @property
    def flagged(self) -> bool:
        """Whether the prompt is held back (sent to review or refused)."""
        return self.action >= Action.REVIEW


ALLOWED = Verdict()


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    verdicts = list(verdicts)
    if not verdicts:
        return ALLOWED
    action = max(v.action for v in verdicts)
    return Verdict(
        action=action,
        categories=frozenset().union(*(v.categories for v in verdicts if v.action == action)),
        reasons=tuple(dict.fromkeys(r for v in verdicts for r in v.reasons)),
        scores={stage: s for v in verdicts for stage, s in v.scores.items()},
        timings_ms={stage: t for v in verdicts for stage, t in v.timings_ms.items()},
    )


class Stage(Protocol):
    """One check of the input pipeline: term lists, the semantic model, a remote service."""

    name: str

    def check(self, prompt: NormalizedPrompt) -> Verdict: ...
