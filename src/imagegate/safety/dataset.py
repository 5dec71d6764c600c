"""Labelled prompts, for calibrating the semantic stage and measuring the pipeline.

A set is JSON lines, one prompt each: ``text``, ``label`` (``harmful`` or ``benign``),
``category``, ``form`` (how it is written: see :data:`FORMS`), ``lang`` (ISO 639-1;
English when absent) and, on the calibration side, ``author`` (who wrote it, so that
out-of-fold scores can hold an author's prompts out together).
tests/data/safety/README.md says who wrote which half.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

LABELS = ("harmful", "benign")
# The English sets' forms, then those of the sets in other languages, where one
# "obfuscated" form covers leetspeak, spacing, look-alikes and romanisation, "diluted"
# is a harmful clause in a long harmless prompt, and "ordinary" a prompt near no category.
FORMS = ("plain", "leetspeak", "spacing", "homoglyph", "paraphrase", "trap")
NEW_FORMS = ("obfuscated", "diluted", "ordinary")


@dataclass(frozen=True, slots=True)
class LabelledPrompt:
    text: str
    label: str
    category: str
    form: str
    lang: str = "en"
    author: str = ""

    @property
    def harmful(self) -> bool:
        return self.label == "harmful"


def read_prompts(path: Path) -> list[LabelledPrompt]:
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            prompt = LabelledPrompt(**json.loads(line))
            if prompt.label not in LABELS or prompt.form not in FORMS + NEW_FORMS:
                raise ValueError(f"{path}:{number}: bad label or form in {line!r}")
            prompts.append(prompt)
    return prompts


def read_sets(paths: Iterable[Path]) -> list[LabelledPrompt]:
    return [prompt for path in paths for prompt in read_prompts(path)]


def write_prompts(path: Path, prompts: Iterable[LabelledPrompt]) -> None:
    lines = (json.dumps(asdict(prompt), ensure_ascii=False) for prompt in prompts)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Measurement:
    """How a filter did on a labelled set: harmful prompts stopped, benign ones stopped."""

    harmful: int
    benign: int
    caught: int
    false_positives: int
    missed: tuple[LabelledPrompt, ...]
    wrongly_stopped: tuple[LabelledPrompt, ...]

    @property
    def recall(self) -> float:
        return self.caught / self.harmful if self.harmful else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0


def measure(prompts: Iterable[LabelledPrompt], stops: Callable[[str], bool]) -> Measurement:
    """Run ``stops`` (does the filter stop this prompt?) over a labelled set."""
    prompts = list(prompts)
    verdicts = [(prompt, stops(prompt.text)) for prompt in prompts]
    missed = tuple(p for p, stopped in verdicts if p.harmful and not stopped)
    wrong = tuple(p for p, stopped in verdicts if not p.harmful and stopped)
    harmful = sum(p.harmful for p in prompts)
    return Measurement(
        harmful=harmful,
        benign=len(prompts) - harmful,
        caught=harmful - len(missed),
        false_positives=len(wrong),
        missed=missed,
        wrongly_stopped=wrong,
    )
