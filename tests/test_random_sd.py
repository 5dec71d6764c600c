"""Random-weight pipelines in the published architectures (generators/random_sd.py).

The full-size models are counted on torch's ``meta`` device (no memory); the ``small``
scale of the same code is built, loaded through the diffusers backend's
``from_pretrained`` and served over HTTP. They draw noise: these tests check the
architectures and the code path, not images.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("diffusers", reason="random_sd needs the [diffusers] extra")

from imagegate.generators import GenerationRequest
from imagegate.generators.diffusers import DiffusersGenerator, DiffusersOptions
from imagegate.generators.random_sd import (
    ARCHITECTURES,
    architecture,
    build_random_sd,
    count_parameters,
    parts_total,
    published_counts,
)
from tests.conftest import SettingsFactory
from tests.helpers import wait_for_job

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# SDXL's and SD-Turbo's Euler scheduler hands a tensor to np.array(), which numpy 2 flags.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword"
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: these tests are about the model's path, which the database does not
    touch; tests/test_diffusers_backend.py serves the diffusers backend on both."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_full_size_models_have_the_published_parameter_counts(arch: str) -> None:
    counts = count_parameters(arch)
    for parts, (figure, tolerance) in published_counts(arch).items():
        measured = parts_total(counts, parts)
        assert abs(measured - figure) <= tolerance, f"{arch} {parts}: {measured:,} vs {figure:,}"
    assert counts["unet"] > 800_000_000  # a UNet at full size, not a scaled-down one


def test_the_counts_tell_the_architectures_apart() -> None:
    """SD 1.5 and SD-Turbo share their blocks: the attention widths and the text encoder
    make the difference, and SDXL's UNet is three times as large."""
    sd15, turbo, sdxl = (count_parameters(arch) for arch in ("sd15", "sd-turbo", "sdxl"))
    assert sd15["unet"] != turbo["unet"]
    assert (sd15["text_encoder"], turbo["text_encoder"]) == (123_060_480, 340_387_840)
    assert 2.9 < sdxl["unet"] / sd15["unet"] < 3.1
    assert sd15["vae"] == turbo["vae"] == sdxl["vae"]


@pytest.mark.parametrize("scale", ["full", "small"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_parts_fit_together(arch: str, scale: str) -> None:
    """What the UNet expects is what the text encoders and the VAE give it."""
    spec = architecture(arch, "small" if scale == "small" else "full")
    unet, vae = spec.configs["unet"], spec.configs["vae"]
    texts = [
        spec.configs[name] for name in ("text_encoder", "text_encoder_2") if name in spec.configs
    ]
    assert unet["cross_attention_dim"] == sum(text["hidden_size"] for text in texts)
    if unet.get("addition_embed_type") == "text_time":  # SDXL: pooled text + 6 size numbers
        pooled = texts[-1]["projection_dim"]
        assert (
            unet["projection_class_embeddings_input_dim"]
            == pooled + 6 * unet["addition_time_embed_dim"]
        )
    assert len(vae["block_out_channels"]) == 4  # latents 8 times smaller than the image
    assert unet["sample_size"] * 8 == spec.resolution == vae["sample_size"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_small_scale_keeps_the_architecture(arch: str) -> None:
    full, small = architecture(arch), architecture(arch, "small")
    assert (small.pipeline, small.components) == (full.pipeline, full.components)
    kept = ("down_block_types", "up_block_types", "use_linear_projection", "addition_embed_type")
    for key in kept:
        assert small.configs["unet"].get(key) == full.configs["unet"].get(key)
    for name in ("unet", "vae"):
        assert len(small.configs[name]["block_out_channels"]) == len(
            full.configs[name]["block_out_channels"]
        )
    assert sum(count_parameters(arch, "small").values()) < 500_000


@pytest.fixture(scope="module")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("random-sd")
    return {arch: build_random_sd(arch, root / arch, scale="small") for arch in ARCHITECTURES}


def request(seed: int, n: int = 1, guidance: float = 5.0) -> GenerationRequest:
    return GenerationRequest(
        uuid.uuid4().hex, "a lighthouse", None, None, 64, 64, 3, guidance, seed, n
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_small_pipeline_loads_through_from_pretrained_and_generates(
    arch: str, small_models: dict[str, Path]
) -> None:
    generator = DiffusersGenerator(str(small_models[arch]), DiffusersOptions(device="cpu"))
    generator.load()
    pipeline = generator.pipeline
    assert type(pipeline).__name__ == architecture(arch).pipeline
    loaded = {
        name: sum(p.numel() for p in getattr(pipeline, name).parameters())
        for name in count_parameters(arch, "small")
    }
    assert loaded == count_parameters(arch, "small")
    first, second = generator.generate([request(seed=3, n=2)], lambda info: None)[0]
    assert first.size == (64, 64)
    assert np.asarray(first).astype(int).std() > 1  # not a blank canvas
    assert first.tobytes() != second.tobytes()  # seeds 3 and 4
    [again] = generator.generate([request(seed=3)], lambda info: None)[0]
    assert np.abs(np.asarray(again, int) - np.asarray(first, int)).max() <= 2


def test_the_same_build_gives_the_same_weights(
    tmp_path: Path, small_models: dict[str, Path]
) -> None:
    rebuilt = build_random_sd("sd15", tmp_path / "again", scale="small")
    for part in ("unet", "vae", "text_encoder"):
        [before] = (small_models["sd15"] / part).glob("*.safetensors")
        [after] = (rebuilt / part).glob("*.safetensors")
        assert before.read_bytes() == after.read_bytes()


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_the_service_generates_with_a_small_pipeline(
    arch: str,
    small_models: dict[str, Path],
    server_factory: Callable[..., httpx.Client],
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        backend="diffusers",
        model=str(small_models[arch]),
        diffusers_device="cpu",
        default_size=64,
        default_steps=3,
    )
    api = server_factory(settings)
    submitted = api.post("/v1/jobs", json={"prompt": "a lighthouse", "seed": 5, "n": 2})
    assert submitted.status_code == 202
    job = wait_for_job(api, submitted.json()["id"], timeout_s=60)
    assert job["status"] == "completed", job["error"]
    assert job["metadata"]["model"] == str(small_models[arch])
    pngs = [api.get(image["url"]) for image in job["images"]]
    assert [PILImage.open(io.BytesIO(png.content)).size for png in pngs] == [(64, 64)] * 2


def test_the_script_builds_a_pipeline_and_checks_the_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import make_random_sd

    folder = tmp_path / "turbo"
    monkeypatch.setattr(
        sys, "argv", ["make_random_sd.py", "sd-turbo", str(folder), "--scale", "small"]
    )
    make_random_sd.main()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    monkeypatch.setattr(sys, "argv", ["make_random_sd.py", "sdxl", "--counts"])
    make_random_sd.main()
    lines = capsys.readouterr().out.splitlines()
    assert any("2,567,463,684" in line for line in lines)
    verdicts = [line.rsplit(": ", 1)[1] for line in lines if "published" in line]
    assert verdicts == ["ok"] * 4
