"""Fitting the semantic stage on labelled prompts: the calibration half only.

Run it after changing the exemplars, the term lists, the folding or the embedder::

    python -m imagegate.safety.calibrate tests/data/safety/calibration.jsonl \
        tests/data/safety/calibration_multilingual.jsonl \
        tests/data/safety/calibration_multilingual_3.jsonl \
        tests/data/safety/calibration_multilingual_4.jsonl \
        tests/data/safety/calibration_multilingual_5.jsonl \
        tests/data/safety/calibration_multilingual_6.jsonl \
        tests/data/safety/calibration_multilingual_7.jsonl

The training data are the exemplar phrases and the calibration prompts, read as the stage
reads them: each prompt whole, and its windows (clauses.py). Every window of an innocent
prompt is innocent, so they all train as such; a harmful prompt is harmful somewhere, so
its whole text trains, and then (a second fit) its window that the first fit finds most
harmful. The classifier is scikit-learn's multinomial ``LogisticRegression`` with
balanced class weights. The thresholds are cuts in out-of-fold harm probabilities of
each prompt's worst window: each prompt is scored by a model fitted on the other folds,
as an unseen prompt would be, so a cut in the scores of the benign prompts (those the
term lists let through) says how many unseen innocent prompts it stops. The folds hold
out whole authors (or, for a file that does not name them, a file's prompts in a language):
shuffled folds score a prompt with a model that has seen its author's other prompts, and
their cuts stopped more innocent prompts by new authors than they promised. The cuts:

- ``block``: at most :data:`BLOCK_FP` of them reach it;
- ``review``: at most :data:`REVIEW_FP` reach it;
- ``confirm``: the lowest cut at which the benign prompts stopped in all, held for review
  or refused on an ambiguous term ("knife", "naked"), stay within :data:`TOTAL_FP`, and
  no lower than :data:`CONFIRM_FLOOR`.

Why the floor: out of fold, the calibration side's benign prompts with an ambiguous term
are those the allow list did not already take out, and it was extended on the false holds
of each round; so the confirm budget looks unspent there, and the cut fell each round
(0.25, 0.16, 0.10, 0.08). On a round that no fit and no allow list had seen yet (the
pipeline of look 12 on the sixth calibration round, 500 benign prompts), a cut of 0.08
confirmed 12 of its 21 false holds; at 0.3 it stopped 11 innocent prompts rather than 21,
and every harmful prompt it had stopped (162 of 168). On the fifth round, run the same way
with look 11's pipeline: 21 rather than 23, and 2 harmful prompts of 540 fewer.
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
from imagegate.safety.embedder import Embedder
from imagegate.safety.normalize import normalize
from imagegate.safety.semantic import (
    BENIGN,
    Exemplars,
    SemanticModel,
    Thresholds,
    data_path,
    load_exemplars,
    model_text,
    window_texts,
)
from imagegate.safety.terms import TermMatcher, load_term_lists
from imagegate.safety.universal import UniversalEncoder

STRENGTH = 3.0  # scikit-learn's C: the best out of fold of 1, 3, 10 and 30
FOLDS = 5
BLOCK_FP, REVIEW_FP, TOTAL_FP = 0.005, 0.015, 0.025
CONFIRM_FLOOR = 0.3  # see the module's docstring
Rows = NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class TrainingSet:
    vectors: NDArray[np.float32]  # one row per text read (windows, then exemplars)
    labels: NDArray[np.str_]  # per prompt: see _label
    windows: tuple[Rows, ...]  # per prompt: its rows, the whole prompt first
    exemplars: Rows
    exemplar_labels: NDArray[np.str_]
    has_block_term: NDArray[np.bool_]  # per prompt: the term stage refuses it anyway
    has_ambiguous_term: NDArray[np.bool_]
    groups: NDArray[np.str_]  # per prompt: who wrote it, as near as its file tells

    @property
    def harmful(self) -> NDArray[np.bool_]:
        """Per prompt: labelled harmful."""
        return _is_harmful(self.labels)


def training_set(
    prompts: Sequence[LabelledPrompt],
    exemplars: Exemplars,
    embedder: Embedder,
    matcher: TermMatcher,
    groups: Sequence[str] | None = None,
) -> TrainingSet:
    folded = [normalize(prompt.text) for prompt in prompts]
    texts: list[str] = []
    windows = []
    for prompt in folded:
        read = window_texts(prompt, matcher)
        windows.append(np.arange(len(texts), len(texts) + len(read)))
        texts += read
    phrases = [(phrase, c) for c, group in exemplars.harmful.items() for phrase in group]
    phrases += [(phrase, BENIGN) for phrase in exemplars.benign]
    first_exemplar = len(texts)
    texts += [model_text(normalize(phrase), matcher) for phrase, _ in phrases]
    return TrainingSet(
        vectors=embedder.embed(texts),
        labels=np.array([_label(p) for p in prompts]),
        windows=tuple(windows),
        exemplars=np.arange(first_exemplar, len(texts)),
        exemplar_labels=np.array([c for _, c in phrases]),
        has_block_term=np.array([bool(matcher.blocked(p.readings)) for p in folded]),
        has_ambiguous_term=np.array([bool(matcher.ambiguous(p.readings)) for p in folded]),
        groups=np.array(groups if groups is not None else [p.lang for p in prompts]),
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
    classifier = fit_classifier(data, np.arange(len(data.labels)))
    return SemanticModel(
        embedder=embedder_id,
        classes=tuple(str(c) for c in classifier.classes_),
        weights=np.asarray(classifier.coef_, dtype=np.float64),
        bias=np.asarray(classifier.intercept_, dtype=np.float64),
        thresholds=thresholds,
        calibration={**facts, "strength": STRENGTH, **measured},
    )


def fit_classifier(data: TrainingSet, prompts: Rows) -> Any:
    """Fitted on ``prompts`` (and the exemplars): once on the whole harmful prompts, then
    again with each one's most harmful window added."""
    rows, labels = _rows(data, prompts)
    first = _classifier().fit(data.vectors[rows], labels)
    harmful = [p for p in prompts if data.harmful[p] and len(data.windows[p]) > 1]
    worst = [
        data.windows[p][int(np.argmax(_harm(first, data.vectors[data.windows[p]])))]
        for p in harmful
    ]
    extra = [(row, data.labels[p]) for row, p in zip(worst, harmful, strict=True)]
    rows = np.concatenate([rows, np.array([r for r, _ in extra], dtype=np.intp)])
    labels = np.concatenate([labels, np.array([label for _, label in extra], dtype=labels.dtype)])
    return _classifier().fit(data.vectors[rows], labels)


def _rows(data: TrainingSet, prompts: Rows) -> tuple[Rows, NDArray[np.str_]]:
    """Each prompt whole; each window of a benign one; every exemplar."""
    rows: list[Rows] = []
    labels: list[str] = []
    for p in prompts:
        taken = data.windows[p][:1] if data.harmful[p] else data.windows[p]
        rows.append(taken)
        labels += [str(data.labels[p])] * len(taken)
    rows.append(data.exemplars)
    labels += [str(label) for label in data.exemplar_labels]
    return np.concatenate(rows), np.array(labels)


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=STRENGTH, class_weight="balanced", max_iter=5000)


def _harm(classifier: Any, vectors: NDArray[np.float32]) -> NDArray[np.float64]:
    benign = ~_is_harmful(classifier.classes_)
    return np.asarray(1.0 - classifier.predict_proba(vectors)[:, benign].sum(axis=1))


def _is_harmful(labels: NDArray[np.str_]) -> NDArray[np.bool_]:
    return ~np.char.startswith(labels.astype(str), BENIGN)


def out_of_fold_harm(data: TrainingSet) -> NDArray[np.float64]:
    """Each calibration prompt's harm probability (its worst window's) from a model that
    saw neither it nor its group (the exemplars are in every training fold)."""
    from sklearn.model_selection import StratifiedGroupKFold  # type: ignore[import-untyped]

    prompts = np.arange(len(data.labels))
    harm = np.zeros(len(prompts))
    folds = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=0)
    for train, held_out in folds.split(prompts, data.labels, data.groups):
        classifier = fit_classifier(data, train)
        for p in held_out:
            harm[p] = _harm(classifier, data.vectors[data.windows[p]]).max()
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
        "prompts": len(data.labels),
        "exemplars": len(data.exemplars),
        "out_of_fold": {
            "folds": FOLDS,
            "grouped_by": "author",
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
    """The lowest cut below ``review`` that keeps all benign stops within TOTAL_FP, and
    not under CONFIRM_FLOOR."""
    budget = math.floor(TOTAL_FP * int(benign.sum())) - int((harm[benign] >= review).sum())
    candidates = np.sort(harm[benign & ambiguous & (harm < review)])[::-1]
    return min(review, max(CONFIRM_FLOOR, _above(candidates, max(budget, 0))))


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


def calibrate(paths: Sequence[Path], embedder: UniversalEncoder) -> SemanticModel:
    """Fit the shipped model's way on the prompts in ``paths``."""
    prompts = [
        (prompt, prompt.author or f"{path.name}:{prompt.lang}")
        for path in paths
        for prompt in read_prompts(path)
    ]
    data = training_set(
        [prompt for prompt, _ in prompts],
        load_exemplars(),
        embedder,
        TermMatcher(load_term_lists()),
        [group for _, group in prompts],
    )
    facts = {
        "sources": {path.name: digest(path) for path in paths},
        "exemplars_sha256": digest(data_path("exemplars.yaml")),
        "terms_sha256": digest(data_path("terms.yaml")),
    }
    return fit(data, embedder.model_id, facts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prompts", type=Path, nargs="+", help="the calibration half (JSON lines)")
    parser.add_argument("-o", "--output", type=Path, default=data_path("semantic_model.json"))
    args = parser.parse_args(argv)
    model = calibrate(args.prompts, UniversalEncoder())
    model.save(args.output)
    print(f"wrote {args.output}: {model.thresholds} {dict(model.calibration)}")


if __name__ == "__main__":
    main()
