"""The ``diffusers`` backend, on a tiny random-weight Stable Diffusion pipeline (CPU, 64x64).

The tiny model draws noise, so these tests check the code path users rely on (loading,
seeds, batching, progress, previews, cancellation, out-of-memory splits, the missing-model
error and the whole service), not image quality.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage
from PIL.Image import Image

pytest.importorskip("diffusers", reason="the diffusers backend needs the [diffusers] extra")

import huggingface_hub.constants
import torch
from diffusers import AutoencoderTiny
from pydantic import ValidationError

from imagegate.errors import GenerationCanceled, GenerationError, ModelUnavailable
from imagegate.generators import GenerationRequest, StepInfo, load_generator
from imagegate.generators.diffusers import DEFAULT_MODEL, DiffusersGenerator, DiffusersOptions
from imagegate.generators.families import family_defaults, with_family_defaults
from imagegate.generators.tiny_sd import build_tiny_sd
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import wait_for_job

STEPS = 4
TOLERANCE = 2  # out of 255: batched and single runs may differ in float rounding only


def request(
    prompt: str = "a lighthouse at dusk", seed: int = 7, n: int = 1, negative: str | None = None
) -> GenerationRequest:
    return GenerationRequest(uuid.uuid4().hex, prompt, negative, None, 64, 64, STEPS, 7.5, seed, n)


def pixels(image: Image) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def differ(a: Image, b: Image) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def ignore(info: StepInfo) -> None:
    pass


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "model")


def loaded(model: Path, preview_every: int = 2, **options: Any) -> DiffusersGenerator:
    on_cpu = DiffusersOptions(device="cpu", **options)
    generator = DiffusersGenerator(str(model), on_cpu, preview_every)
    generator.load()
    return generator


@pytest.fixture(scope="session")
def generator(tiny_model: Path) -> DiffusersGenerator:
    return loaded(tiny_model)


def one(generator: DiffusersGenerator, req: GenerationRequest) -> list[Image]:
    return generator.generate([req], ignore)[0]


def test_the_tiny_model_loads_through_the_users_path(generator: DiffusersGenerator) -> None:
    assert type(generator.pipeline).__name__ == "StableDiffusionPipeline"
    [image] = one(generator, request())
    assert image.size == (64, 64)
    assert pixels(image).std() > 1  # not a blank canvas


def test_the_same_request_and_seed_give_the_same_image(generator: DiffusersGenerator) -> None:
    [first], [again] = one(generator, request(seed=11)), one(generator, request(seed=11))
    [other] = one(generator, request(seed=12))
    assert first.tobytes() == again.tobytes()
    assert differ(first, other) > 20


def test_n_images_are_distinct_and_image_i_uses_seed_plus_i(
    generator: DiffusersGenerator,
) -> None:
    images = one(generator, request(seed=20, n=3))
    assert len(images) == 3
    assert all(differ(a, b) > 20 for a, b in [(images[0], images[1]), (images[1], images[2])])
    [alone] = one(generator, request(seed=22))
    assert differ(images[2], alone) <= TOLERANCE


def test_progress_every_step_and_a_preview_per_request_every_k_steps(
    generator: DiffusersGenerator,
) -> None:
    seen: list[StepInfo] = []
    generator.generate([request(seed=1, n=2), request(seed=2)], seen.append)
    assert [(info.step, info.total) for info in seen] == [(s, STEPS) for s in range(1, 5)]
    assert [info.previews is not None for info in seen] == [False, True, False, True]
    previews = seen[1].previews
    assert previews is not None and len(previews) == 2  # one per request, not per image
    assert all(isinstance(p, Image) and p.size == (8, 8) for p in previews)
    assert previews[0].tobytes() != previews[1].tobytes()  # drawn from each request's latents


def test_raising_from_on_step_stops_the_generation_and_propagates(
    generator: DiffusersGenerator,
) -> None:
    seen: list[int] = []

    def cancel_at_step_2(info: StepInfo) -> None:
        seen.append(info.step)
        if info.step == 2:
            raise GenerationCanceled

    with pytest.raises(GenerationCanceled):
        generator.generate([request(seed=5)], cancel_at_step_2)
    assert seen == [1, 2]
    # The pipeline is not left interrupted: the next call renders the same image as before.
    [after] = one(generator, request(seed=5))
    assert after.tobytes() == one(generator, request(seed=5))[0].tobytes()
    assert pixels(after).std() > 1


def test_a_batch_gives_each_request_the_image_it_gets_alone(
    generator: DiffusersGenerator,
) -> None:
    batch = [
        request("a red barn", seed=3, n=2),
        request("a lighthouse at dusk", seed=4, negative="fog"),
        request("a blue boat", seed=5),
    ]
    together = generator.generate(batch, ignore)
    assert [len(images) for images in together] == [2, 1, 1]
    for req, images in zip(batch, together, strict=True):
        for alone, batched in zip(one(generator, req), images, strict=True):
            assert differ(alone, batched) <= TOLERANCE
    assert differ(together[1][0], together[2][0]) > 20


def test_a_batch_of_incompatible_requests_is_refused(generator: DiffusersGenerator) -> None:
    longer = GenerationRequest("b", "a boat", None, None, 64, 64, STEPS + 1, 7.5, 1)
    with pytest.raises(GenerationError, match="share its size, steps and guidance"):
        generator.generate([request(), longer], ignore)


class OutOfMemoryAbove:
    """The real pipeline, except that a call with more than ``limit`` images fails like a
    GPU out of memory after its first step (the point where a real one runs out)."""

    def __init__(self, pipeline: Any, limit: int, error: Callable[[], Exception]) -> None:
        self.pipeline, self.limit, self.error = pipeline, limit, error
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)

    def __call__(self, **kwargs: Any) -> Any:
        images = len(kwargs["prompt"])
        self.calls.append(images)
        report = kwargs["callback_on_step_end"]

        def step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            if images > self.limit:
                raise self.error()
            return report(pipe, index, timestep, tensors)

        return self.pipeline(**(kwargs | {"callback_on_step_end": step_end}))


@pytest.fixture
def fresh(tiny_model: Path) -> DiffusersGenerator:
    return loaded(tiny_model, preview_every=0)


@pytest.mark.parametrize(
    "error",
    [
        lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        lambda: RuntimeError("MPS backend out of memory (MPS allocated: 17.5 GB)"),
    ],
    ids=["cuda", "mps"],
)
def test_out_of_memory_splits_the_batch_in_halves_and_remembers(
    fresh: DiffusersGenerator, generator: DiffusersGenerator, error: Callable[[], Exception]
) -> None:
    fake = fresh.pipeline = OutOfMemoryAbove(fresh.pipeline, limit=2, error=error)
    batch = [request("a red barn", seed=3, n=2), request("a blue boat", seed=9)]
    seen: list[StepInfo] = []
    results = fresh.generate(batch, seen.append)
    assert fake.calls == [3, 2, 1]
    assert fresh.max_images_per_call == 2
    for req, images in zip(batch, results, strict=True):
        for alone, batched in zip(one(generator, req), images, strict=True):
            assert differ(alone, batched) <= TOLERANCE
    # After the split, progress counts both halves: 8 steps in all.
    assert [(i.step, i.total) for i in seen[-2 * STEPS :]] == [(s, 8) for s in range(1, 9)]
    fake.calls.clear()
    fresh.generate(batch, ignore)
    assert fake.calls == [2, 1]  # the smaller size is used at once next time


def test_out_of_memory_on_one_image_and_other_errors_propagate(
    fresh: DiffusersGenerator,
) -> None:
    oom = OutOfMemoryAbove(fresh.pipeline, limit=0, error=lambda: torch.OutOfMemoryError("OOM"))
    fresh.pipeline = oom
    with pytest.raises(torch.OutOfMemoryError):
        fresh.generate([request(n=2)], ignore)
    assert oom.calls == [2, 1]
    other = OutOfMemoryAbove(oom.pipeline, limit=0, error=lambda: RuntimeError("cuDNN error"))
    fresh.pipeline, fresh.max_images_per_call = other, None
    with pytest.raises(RuntimeError, match="cuDNN error"):
        fresh.generate([request(n=2)], ignore)
    assert other.calls == [2]  # not an out-of-memory error: no split


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.usefixtures("offline")
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
@pytest.mark.parametrize("where", ["missing-dir", "not-a-pipeline", "hub-id"])
def test_a_missing_model_is_a_clear_error_naming_it(tmp_path: Path, where: str) -> None:
    model = {
        "missing-dir": str(tmp_path / "no-such-model"),
        "not-a-pipeline": str(tmp_path),
        "hub-id": f"imagegate-tests/no-such-model-{uuid.uuid4().hex[:8]}",
    }[where]
    with pytest.raises(ModelUnavailable) as caught:
        DiffusersGenerator(model, DiffusersOptions(device="cpu")).load()
    assert (caught.value.status, caught.value.code) == (503, "model_unavailable")
    assert repr(model) in caught.value.message
    assert f"hf download {model}" in caught.value.message
    assert "IMAGEGATE_MODEL" in caught.value.message
    error = caught.value  # no chained traceback from the hub's internals
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_options_attention_slicing_and_vae_tiling_keep_the_image(
    tiny_model: Path, generator: DiffusersGenerator
) -> None:
    tuned = loaded(tiny_model, attention_slicing=True, vae_tiling=True)
    assert tuned.pipeline.vae.use_tiling
    assert differ(one(tuned, request(seed=8))[0], one(generator, request(seed=8))[0]) <= TOLERANCE


def test_channels_last_puts_the_convolutions_in_nhwc_and_keeps_the_image(
    tiny_model: Path, generator: DiffusersGenerator
) -> None:
    nhwc = loaded(tiny_model, channels_last=True)
    convolutions = [
        nhwc.pipeline.unet.conv_in.weight,
        nhwc.pipeline.vae.decoder.conv_in.weight,
    ]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    plain = generator.pipeline.unet.conv_in.weight
    assert not plain.is_contiguous(memory_format=torch.channels_last)
    assert differ(one(nhwc, request(seed=8))[0], one(generator, request(seed=8))[0]) <= TOLERANCE


def test_eager_attention_swaps_sdpa_for_the_classic_processors(
    tiny_model: Path, generator: DiffusersGenerator
) -> None:
    def processors(g: DiffusersGenerator) -> set[str]:
        return {type(p).__name__ for p in g.pipeline.unet.attn_processors.values()}

    eager = loaded(tiny_model, attention="eager")
    assert (processors(generator), processors(eager)) == ({"AttnProcessor2_0"}, {"AttnProcessor"})
    assert differ(one(eager, request(seed=8))[0], one(generator, request(seed=8))[0]) <= TOLERANCE


class RecordingCompile:
    """Stands in for ``torch.compile``, whose real inductor build takes minutes on this
    CPU: it records each call's mode and the input shapes of every call it wraps."""

    def __init__(self) -> None:
        self.modes: list[str | None] = []
        self.shapes: list[list[tuple[int, ...]]] = []

    def __call__(self, fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        self.modes.append(options.get("mode"))
        seen: list[tuple[int, ...]] = []
        self.shapes.append(seen)

        def compiled(*args: Any, **kwargs: Any) -> Any:
            seen.append(tuple(args[0].shape))
            return fn(*args, **kwargs)

        return compiled


def test_compile_wraps_the_unet_and_vae_and_runs_them_at_warm_up(
    tiny_model: Path, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingCompile()
    monkeypatch.setattr(torch, "compile", recorder)
    settings = make_settings(
        backend="diffusers",
        model=str(tiny_model),
        diffusers_device="cpu",
        diffusers_compile="max-autotune",
        default_size=64,
        default_guidance=7.5,
        max_batch=3,
    )
    chosen = load_generator(settings)
    chosen.load()
    assert recorder.modes == ["max-autotune", "max-autotune"]  # the UNet, the VAE's decode
    unet, vae = ({shape[0] for shape in seen} for seen in recorder.shapes)
    # Warm-up ran the service's shapes: 1 and 3 images, each doubled by guidance (CFG).
    assert (unet, vae) == ({2, 6}, {1, 3})
    assert {shape[2:] for shape in recorder.shapes[0]} == {(8, 8)}  # 64 px, in latents
    recorder.shapes[0].clear()
    assert isinstance(chosen, DiffusersGenerator)
    chosen.generate([request()], ignore)
    assert len(recorder.shapes[0]) == STEPS  # jobs run the compiled UNet too


def test_without_compile_nothing_is_compiled_and_warm_up_stays_tiny(
    tiny_model: Path, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingCompile()
    monkeypatch.setattr(torch, "compile", recorder)
    settings = make_settings(backend="diffusers", model=str(tiny_model), max_batch=8)
    chosen = load_generator(settings)
    assert isinstance(chosen, DiffusersGenerator)
    assert chosen.options.compile == "off"
    assert [(r.width, r.n, r.steps) for r in chosen.options.warm_up] == [(64, 1, 1)]
    with pytest.raises(ValidationError):
        make_settings(diffusers_compile="fastest")


# diffusers' Euler schedulers hand a tensor to np.array(), which numpy 2 flags (harmless).
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_the_scheduler_is_chosen_by_class_name(tiny_model: Path) -> None:
    euler = loaded(tiny_model, scheduler="EulerDiscreteScheduler")
    assert type(euler.pipeline.scheduler).__name__ == "EulerDiscreteScheduler"
    assert one(euler, request())[0].size == (64, 64)
    with pytest.raises(ValueError, match="NoSuchScheduler"):
        loaded(tiny_model, scheduler="NoSuchScheduler")


def test_taesd_previews_decode_at_image_resolution(tiny_model: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(tmp_path / "taesd")
    with_taesd = loaded(tiny_model, taesd=str(tmp_path / "taesd"))
    seen: list[StepInfo] = []
    with_taesd.generate([request()], seen.append)
    previews = seen[1].previews
    assert previews is not None and [p.size for p in previews] == [(64, 64)]


@pytest.mark.parametrize(
    ("model", "steps", "guidance"),
    [
        ("stabilityai/sd-turbo", 1, 0.0),
        ("stabilityai/sdxl-turbo", 1, 0.0),
        ("stabilityai/stable-diffusion-xl-base-1.0", 30, 5.0),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", 30, 7.5),
    ],
)
def test_family_defaults(model: str, steps: int, guidance: float) -> None:
    defaults = family_defaults(model)
    assert (defaults.steps, defaults.guidance) == (steps, guidance)


def test_settings_choose_and_validate_the_backend(
    make_settings: SettingsFactory, tiny_model: Path
) -> None:
    settings = make_settings(
        backend="diffusers", model=str(tiny_model), diffusers_device="cpu", preview_every=3
    )
    chosen = load_generator(settings)
    assert isinstance(chosen, DiffusersGenerator)
    assert (chosen.model_name, chosen.device, chosen.preview_every) == (str(tiny_model), "cpu", 3)
    assert load_generator(make_settings(backend="diffusers")).model_name == DEFAULT_MODEL
    for bad in ({"diffusers_device": "gpu"}, {"diffusers_scheduler": "euler; rm -rf"}):
        with pytest.raises(ValidationError):
            Settings(**bad)


@pytest.fixture
def diffusers_api(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory, tiny_model: Path
) -> httpx.Client:
    settings = make_settings(
        backend="diffusers",
        model=str(tiny_model),
        diffusers_device="cpu",
        default_size=64,
        default_steps=STEPS,
    )
    return server_factory(settings, workers=1)


def test_the_service_generates_a_png_with_the_model(
    diffusers_api: httpx.Client, generator: DiffusersGenerator, tiny_model: Path
) -> None:
    submitted = diffusers_api.post("/v1/jobs", json={"prompt": "a lighthouse", "seed": 42})
    assert submitted.status_code == 202
    job = wait_for_job(diffusers_api, submitted.json()["id"], timeout_s=60)
    assert job["status"] == "completed", job["error"]
    assert job["metadata"]["model"] == str(tiny_model)
    png = diffusers_api.get(job["images"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    served = PILImage.open(io.BytesIO(png.content))
    assert served.size == (64, 64)
    spec = (job["full_prompt"], None, None, 64, 64, job["steps"], job["guidance"], 42)
    expected = GenerationRequest("x", *spec)
    assert differ(served, one(generator, expected)[0]) <= TOLERANCE


def test_the_model_family_sets_request_defaults_unless_the_operator_did(
    make_settings: SettingsFactory,
) -> None:
    turbo = with_family_defaults(make_settings(backend="diffusers", model="stabilityai/sd-turbo"))
    assert (turbo.default_steps, turbo.default_guidance) == (1, 0.0)
    chosen = make_settings(backend="diffusers", model="stabilityai/sd-turbo", default_steps=8)
    assert with_family_defaults(chosen).default_steps == 8
    sketch = make_settings()
    assert with_family_defaults(sketch) is sketch
