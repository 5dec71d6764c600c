"""What the semantic stage needs of an embedding model: one unit-length vector per text.

The model in use is the multilingual Universal Sentence Encoder (universal.py). Until
issue 14 it was an int8 ONNX export of the English all-MiniLM-L6-v2, bundled under
``data/minilm/``; bench/safety_eval.py still measures that pipeline, from git.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """Names the model and its version: the fitted classifier records it."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text."""
        ...
