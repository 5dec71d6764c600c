"""The semantic stage: whether a prompt's meaning is harmful, and in what way.

The prompt and each of its clauses (clauses.py), as normalised (normalize.py), are
embedded with the multilingual Universal Sentence Encoder (universal.py), and a
multinomial logistic regression over each embedding gives the probability of each
harmful category and of the innocent senses of each category's words ("a glue gun" is
``benign:weapons``) or none ("benign"). The most harmful of these windows decides, so a
harmful clause counts however much harmless text surrounds it, and the reasons name it.
None of the numbers is written by hand: calibrate.py fits the regression on the
exemplar phrases of ``data/exemplars.yaml`` and the calibration half of the labelled
prompts, and picks the thresholds that turn the harmful probability into an action on
out-of-fold probabilities of the worst window, so that each threshold says how many
unseen innocent prompts it stops.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from imagegate.safety.clauses import Window, clause_reason, windows
from imagegate.safety.embedder import Embedder, Vectors
from imagegate.safety.normalize import NormalizedPrompt, first_reading
from imagegate.safety.terms import TermMatcher
from imagegate.safety.verdict import Action, Verdict

BENIGN = "benign"
WARM_UP_WORDS = 64  # prompt lengths run once at start-up, so no user meets a cold path


@dataclass(frozen=True, slots=True)
class Exemplars:
    harmful: Mapping[str, tuple[str, ...]]  # category -> phrases
    benign: tuple[str, ...]


def data_path(name: str) -> Path:
    return Path(str(resources.files("imagegate.safety") / "data" / name))


def load_exemplars(path: Path | None = None) -> Exemplars:
    raw = yaml.safe_load((path or data_path("exemplars.yaml")).read_text(encoding="utf-8"))
    harmful = {category: tuple(phrases) for category, phrases in raw["harmful"].items()}
    return Exemplars(harmful, tuple(raw["benign"]))


ALLOWED_STAND_IN = "thing"  # what the model reads in place of an allowed phrase
PART = -2  # Window.index of a part the caller gave whole (a template input)


def model_text(prompt: NormalizedPrompt, terms: TermMatcher | None) -> str:
    """What the model reads: the prompt's words in their own letters, with the allow
    list's innocent compounds ("a radar gun", "riding shotgun") replaced by a neutral
    word, so their weapon or violence words do not pull an innocent prompt towards harm.
    Masking them caught 0.6-1 point more harmful prompts out of fold at the same false
    positives (with all-MiniLM-L6-v2)."""
    plain = prompt.plain or prompt.text
    return terms.mask_allowed(prompt.text, plain, ALLOWED_STAND_IN) if terms else plain


def prompt_windows(prompt: NormalizedPrompt) -> list[Window]:
    """The windows of ``prompt`` (clauses.py), then the parts its caller gave whole."""
    given = [Window(part, PART) for part in prompt.parts]
    return windows(prompt.original) + given


def window_texts(prompt: NormalizedPrompt, terms: TermMatcher | None) -> list[str]:
    """What the model reads of each of :func:`prompt_windows`, in order."""
    return [
        model_text(prompt if window.whole else first_reading(window.text), terms)
        for window in prompt_windows(prompt)
    ]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the harm probability turns into an action."""

    block: float  # at or above: refused
    review: float  # at or above: held for review
    confirm: float  # at or above, with an ambiguous term in the prompt: refused


@dataclass(frozen=True, slots=True)
class SemanticModel:
    """The fitted classifier, its thresholds, and how they were obtained."""

    embedder: str  # the embedding model the weights were fitted on
    classes: tuple[str, ...]  # the harmful categories, "benign" and "benign:<category>"
    weights: NDArray[np.float64]  # one row per class
    bias: NDArray[np.float64]
    thresholds: Thresholds
    calibration: Mapping[str, Any]

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if not c.startswith(BENIGN))

    def scores(self, vectors: Vectors) -> list[tuple[float, dict[str, float]]]:
        """Per text: the probability that it is harmful (one less the benign classes'), as
        the thresholds were cut in it, and each harmful category's, rounded as reported."""
        logits = vectors.astype(np.float64) @ self.weights.T + self.bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        rows = exp / exp.sum(axis=1, keepdims=True)
        harmful = [i for i, c in enumerate(self.classes) if not c.startswith(BENIGN)]
        return [
            (
                float(row[harmful].sum()),
                {self.classes[i]: round(float(row[i]), 4) for i in harmful},
            )
            for row in rows
        ]

    @classmethod
    def load(cls, path: Path | None = None) -> SemanticModel:
        raw = json.loads((path or data_path("semantic_model.json")).read_text(encoding="utf-8"))
        return cls(
            embedder=raw["embedder"],
            classes=tuple(raw["classes"]),
            weights=np.array(raw["weights"], dtype=np.float64),
            bias=np.array(raw["bias"], dtype=np.float64),
            thresholds=Thresholds(**raw["thresholds"]),
            calibration=raw["calibration"],
        )

    def save(self, path: Path) -> None:
        """As indented JSON, with one line per class in ``weights``."""
        head = {
            "embedder": self.embedder,
            "classes": list(self.classes),
            "thresholds": asdict(self.thresholds),
            "calibration": self.calibration,
            "bias": [round(float(b), 6) for b in self.bias],
        }
        rows = ",\n    ".join(json.dumps([round(float(w), 6) for w in row]) for row in self.weights)
        text = json.dumps(head, indent=2)[:-2] + f',\n  "weights": [\n    {rows}\n  ]\n}}\n'
        path.write_text(text, encoding="utf-8")


class SemanticStage:
    """Refuses, or holds for review, a prompt whose meaning is likely harmful."""

    name = "semantic"

    def __init__(
        self, embedder: Embedder, model: SemanticModel, terms: TermMatcher | None = None
    ) -> None:
        self.embedder = embedder
        self.model = model
        self.terms = terms  # the allowed phrases, and the ambiguous terms to confirm or clear

    def warm_up(self) -> None:
        for words in range(1, WARM_UP_WORDS + 1):
            self.embedder.embed([" ".join(["sea"] * words)])

    def check(self, prompt: NormalizedPrompt) -> Verdict:
        parts = prompt_windows(prompt)
        scored = self.model.scores(self.embedder.embed(window_texts(prompt, self.terms)))
        worst = max(range(len(parts)), key=lambda i: scored[i][0])
        harm, scores = scored[worst]
        category = max(scores, key=scores.__getitem__)
        action, reasons = self._decide(harm, category, prompt)
        categories = frozenset(r.split(":")[1] for r in reasons)
        if reasons and not parts[worst].whole:
            reasons += (clause_reason(parts[worst].text),)
        return Verdict(action, categories, reasons, {self.name: scores})

    def _decide(
        self, harm: float, category: str, prompt: NormalizedPrompt
    ) -> tuple[Action, tuple[str, ...]]:
        limits = self.model.thresholds
        if harm >= limits.block:
            return Action.BLOCK, (f"semantic:{category}",)
        if harm >= limits.review:
            return Action.REVIEW, (f"semantic:{category}",)
        cues = self.terms.ambiguous(prompt.readings) if self.terms else {}
        if cues and harm >= limits.confirm:
            return Action.BLOCK, tuple(f"confirmed:{c}:{term}" for c, term in cues.items())
        return Action.ALLOW, ()
