"""Fitting the semantic stage on labelled prompts: the calibration half only.

Run it after changing the exemplars, the term lists, the folding or the embedder::

    python -m imagegate.safety.calibrate tests/data/safety/calibration.jsonl

The training data are the exemplar phrases and the calibration prompts, read as the stage
reads them. The classifier is scikit-learn's multinomial ``LogisticRegression`` with
balanced class weights. The thresholds are cuts in out-of-fold harm probabilities: each
prompt is scored by a model fitted on the other folds, as an unseen prompt would be, so
a cut in the scores of the benign prompts (those the term lists let through) says how
many unseen innocent prompts it stops:

- ``block``: at most :data:`BLOCK_FP` of them reach it;
- ``review``: at most :data:`REVIEW_FP` reach it;
- ``confirm``: the lowest cut at which the benign prompts stopped in all, held for review
  or refused on an ambiguous term ("knife", "naked"), stay within :data:`TOTAL_FP`.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from imagegate.safety.dataset import LabelledPrompt, read_prompts
from imagegate.safety.embedder import Embedder, MiniLMEmbedder
from imagegate.safety.normalize import normalize
from imagegate.safety.semantic import (
    BENIGN,
    Exemplars,
    SemanticModel,
    Thresholds,
    data_path,
    load_exemplars,
    model_text,
)
from imagegate.safety.terms import TermMatcher, load_term_lists

STRENGTH = 30.0  # scikit-learn's C: the best out of fold of 1, 3, 10 and 30 (within a point)
FOLDS = 5
BLOCK_FP, REVIEW_FP, TOTAL_FP = 0.005, 0.015, 0.025


@dataclass(frozen=True, slots=True)
class TrainingSet:
    vectors: NDArray[np.float32]
    labels: NDArray[np.str_]  # see _label
    from_prompts: int  # the first rows are the labelled prompts, the rest exemplars
    has_block_term: NDArray[np.bool_]  # per prompt: the term stage refuses it anyway
    has_ambiguous_term: NDArray[np.bool_]

    @property
    def harmful(self) -> NDArray[np.bool_]:
        """Per prompt: labelled harmful."""
        return _is_harmful(self.labels[: self.from_prompts])


def training_set(
    prompts: Sequence[LabelledPrompt],
    exemplars: Exemplars,
    embedder: Embedder,
    matcher: TermMatcher,
) -> TrainingSet:
    folded = [normalize(prompt.text) for prompt in prompts]
    phrases = [(phrase, c) for c, group in exemplars.harmful.items() for phrase in group]
    phrases += [(phrase, BENIGN) for phrase in exemplars.benign]
    texts = [model_text(prompt, matcher) for prompt in folded]
    texts += [model_text(normalize(phrase), matcher) for phrase, _ in phrases]
    labels = [_label(p) for p in prompts] + [c for _, c in phrases]
    return TrainingSet(
        vectors=embedder.embed(texts),
        labels=np.array(labels),
        from_prompts=len(prompts),
        has_block_term=np.array([bool(matcher.blocked(p.readings)) for p in folded]),
        has_ambiguous_term=np.array([bool(matcher.ambiguous(p.readings)) for p in folded]),
    )


def _label(prompt: LabelledPrompt) -> str:
    """A harmful prompt's category; for a benign one, "benign", or "benign:<category>" when
    it uses that category's words innocently."""
    if prompt.harmful:
        return prompt.category
    return BENIGN if prompt.category == "none" else f"{BENIGN}:{prompt.category}"


def fit(data: TrainingSet, embedder_id: str, facts: dict[str, Any]) -> SemanticModel:
    """The classifier fitted on everything, with thresholds from out-of-fold scores."""
    thresholds, measured = _thresholds(data, out_of_fold_harm(data))
    classifier = _classifier().fit(data.vectors, data.labels)
    return SemanticModel(
        embedder=embedder_id,
        classes=tuple(str(c) for c in classifier.classes_),
        weights=np.asarray(classifier.coef_, dtype=np.float64),
        bias=np.asarray(classifier.intercept_, dtype=np.float64),
        thresholds=thresholds,
        calibration={**facts, "strength": STRENGTH, **measured},
    )


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=STRENGTH, class_weight="balanced", max_iter=5000)


def _is_harmful(labels: NDArray[np.str_]) -> NDArray[np.bool_]:
    return ~np.char.startswith(labels.astype(str), BENIGN)


def out_of_fold_harm(data: TrainingSet) -> NDArray[np.float64]:
    """Each calibration prompt's harm probability from a model that never saw it (the
    exemplars are in every training fold)."""
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    prompts = np.arange(data.from_prompts)
    exemplars = np.arange(data.from_prompts, len(data.labels))
    harm = np.zeros(data.from_prompts)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    for train, held_out in folds.split(prompts, data.labels[: data.from_prompts]):
        rows = np.concatenate([train, exemplars])
        classifier = _classifier().fit(data.vectors[rows], data.labels[rows])
        benign = ~_is_harmful(classifier.classes_)
        probabilities = classifier.predict_proba(data.vectors[held_out])
        harm[held_out] = 1.0 - probabilities[:, benign].sum(axis=1)
    return harm


def _thresholds(data: TrainingSet, harm: NDArray[np.float64]) -> tuple[Thresholds, dict[str, Any]]:
    harmful = data.harmful
    benign = ~harmful & ~data.has_block_term
    block = _cut(harm[benign], BLOCK_FP)
    review = _cut(harm[benign], REVIEW_FP)
    confirm = _confirm_cut(harm, benign, data.has_ambiguous_term, review)
    stopped = data.has_block_term | (harm >= review) | (data.has_ambiguous_term & (harm >= confirm))
    recall = float(stopped[harmful].mean())
    false_positives = float(stopped[~harmful].mean())
    measured = {
        "prompts": int(data.from_prompts),
        "exemplars": int(len(data.labels) - data.from_prompts),
        "out_of_fold": {
            "folds": FOLDS,
            "recall": round(recall, 4),
            "false_positive_rate": round(false_positives, 4),
        },
        "rates": {"block": BLOCK_FP, "review": REVIEW_FP, "total": TOTAL_FP},
    }
    return Thresholds(block=block, review=review, confirm=confirm), measured


def _cut(benign_scores: NDArray[np.float64], rate: float) -> float:
    """The lowest threshold (4 decimal places) that at most ``rate`` of the scores reach."""
    allowed = math.floor(rate * len(benign_scores))
    return _above(np.sort(benign_scores)[::-1], allowed)


def _confirm_cut(
    harm: NDArray[np.float64],
    benign: NDArray[np.bool_],
    ambiguous: NDArray[np.bool_],
    review: float,
) -> float:
    """The lowest cut below ``review`` that keeps all benign stops within TOTAL_FP."""
    budget = math.floor(TOTAL_FP * int(benign.sum())) - int((harm[benign] >= review).sum())
    candidates = np.sort(harm[benign & ambiguous & (harm < review)])[::-1]
    return min(review, _above(candidates, max(budget, 0)))


def _above(ranked: NDArray[np.float64], allowed: int) -> float:
    """A cut just above ``ranked[allowed]`` (scores in falling order), so that ``allowed``
    scores reach it; below them all when there are no more than that."""
    if allowed >= len(ranked):
        return math.floor(float(ranked[-1]) - 1.0) if len(ranked) else 0.0
    score = float(ranked[allowed])
    cut = round(math.floor(score * 10_000) / 10_000 + 0.0001, 4)
    return cut if cut > score else round(cut + 0.0001, 4)  # float floor can land on it


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calibrate(path: Path, embedder: MiniLMEmbedder) -> SemanticModel:
    """Fit the shipped model's way on the prompts in ``path``."""
    data = training_set(
        read_prompts(path), load_exemplars(), embedder, TermMatcher(load_term_lists())
    )
    facts = {
        "source": path.name,
        "source_sha256": digest(path),
        "exemplars_sha256": digest(data_path("exemplars.yaml")),
        "terms_sha256": digest(data_path("terms.yaml")),
    }
    return fit(data, embedder.model_id, facts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prompts", type=Path, help="the calibration half (JSON lines)")
    parser.add_argument("-o", "--output", type=Path, default=data_path("semantic_model.json"))
    args = parser.parse_args(argv)
    embedder = MiniLMEmbedder()
    model = calibrate(args.prompts, embedder)
    model.save(args.output)
    print(f"wrote {args.output}: {model.thresholds} {dict(model.calibration)}")


if __name__ == "__main__":
    main()
