"""Picking the semantic stage's thresholds on labelled prompts: the calibration half only.

Run it after changing the exemplars, the term lists or the model::

    python -m imagegate.safety.calibrate tests/data/safety/calibration.jsonl

Each threshold is a cut in the scores of the benign prompts, so it says how many innocent
prompts it may stop: ``block`` stops none of them, ``review`` at most 2%, and ``confirm``
(used only when the prompt holds an ambiguous term such as "knife") at most 20%. The
weight of the benign exemplars is the one of :data:`BENIGN_WEIGHTS` that then catches the
most harmful prompts the term lists miss, less the benign ones stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagegate.safety.dataset import LabelledPrompt, read_prompts
from imagegate.safety.normalize import normalize
from imagegate.safety.semantic import (
    MODEL_NAME,
    SemanticScorer,
    Similarities,
    Thresholds,
    data_path,
    load_exemplars,
    shared_embedder,
)
from imagegate.safety.terms import TermMatcher, load_term_lists

BENIGN_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
BLOCK_FP, REVIEW_FP, CONFIRM_FP = 0.0, 0.02, 0.2


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled prompt as the calibration sees it."""

    harmful: bool
    similarities: Similarities
    has_block_term: bool  # the term stage refuses it whatever the thresholds
    has_ambiguous_term: bool

    def top(self, benign_weight: float) -> float:
        return max(self.similarities.scores(benign_weight).values())


def calibrate(
    prompts: Sequence[LabelledPrompt], scorer: SemanticScorer, matcher: TermMatcher, source: str
) -> Thresholds:
    samples = _samples(prompts, scorer, matcher)
    candidates = [_thresholds_for(weight, samples) for weight in BENIGN_WEIGHTS]
    best = max(candidates, key=lambda t: (t.calibration["gain"], -t.benign_weight))
    digest = hashlib.sha256(data_path("exemplars.yaml").read_bytes()).hexdigest()
    facts = {"source": source, "model": MODEL_NAME, "exemplars_sha256": digest}
    return dataclasses.replace(best, calibration={**facts, **best.calibration})


def _samples(
    prompts: Sequence[LabelledPrompt], scorer: SemanticScorer, matcher: TermMatcher
) -> list[Sample]:
    folded = [normalize(prompt.text) for prompt in prompts]
    # One at a time, as the stage sees them: a batch pads, which moves scores a little.
    similarities = [scorer.similarities([prompt.text])[0] for prompt in folded]
    return [
        Sample(
            labelled.harmful,
            similarity,
            bool(matcher.blocked(prompt.readings)),
            bool(matcher.ambiguous(prompt.readings)),
        )
        for labelled, prompt, similarity in zip(prompts, folded, similarities, strict=True)
    ]


def _thresholds_for(weight: float, samples: Sequence[Sample]) -> Thresholds:
    benign_tops = [s.top(weight) for s in samples if not s.harmful]
    block, review, confirm = (_cut(benign_tops, rate) for rate in (BLOCK_FP, REVIEW_FP, CONFIRM_FP))

    def flagged(sample: Sample) -> bool:
        top = sample.top(weight)
        return top >= review or (sample.has_ambiguous_term and top >= confirm)

    missed_by_terms = [s for s in samples if s.harmful and not s.has_block_term]
    benign = [s for s in samples if not s.harmful]
    recall = sum(map(flagged, missed_by_terms)) / max(1, len(missed_by_terms))
    fp_rate = sum(map(flagged, benign)) / max(1, len(benign))
    measured = {
        "prompts": len(samples),
        "harmful_without_block_term": len(missed_by_terms),
        "benign": len(benign),
        "recall_without_block_term": round(recall, 4),
        "benign_flagged": round(fp_rate, 4),
        "gain": round(recall - fp_rate, 4),
        "rates": {"block": BLOCK_FP, "review": REVIEW_FP, "confirm": CONFIRM_FP},
    }
    return Thresholds(weight, block, review, confirm, measured)


def _cut(benign_scores: Sequence[float], rate: float) -> float:
    """The lowest threshold that at most ``rate`` of the benign scores reach.

    Scores have 4 decimal places, so one step above a score is the next 4-place number.
    """
    allowed = math.floor(rate * len(benign_scores))
    ranked = sorted(benign_scores, reverse=True)
    if allowed >= len(ranked):
        return -1.0
    return round(ranked[allowed] + 0.0001, 4)


def _fields(thresholds: Thresholds) -> dict[str, float]:
    return {
        "benign_weight": thresholds.benign_weight,
        "block": thresholds.block,
        "review": thresholds.review,
        "confirm": thresholds.confirm,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prompts", type=Path, help="the calibration half (JSON lines)")
    parser.add_argument("-o", "--output", type=Path, default=data_path("semantic_thresholds.json"))
    args = parser.parse_args(argv)
    scorer = SemanticScorer(shared_embedder(), load_exemplars())
    matcher = TermMatcher(load_term_lists())
    thresholds = calibrate(read_prompts(args.prompts), scorer, matcher, args.prompts.name)
    thresholds.save(args.output)
    print(f"wrote {args.output}: {_fields(thresholds)} {dict(thresholds.calibration)}")


if __name__ == "__main__":
    main()
