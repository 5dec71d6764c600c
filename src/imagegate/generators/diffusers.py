"""``diffusers``: text-to-image models through Hugging Face diffusers (GPU, MPS or CPU).

:class:`DiffusersGenerator` loads a pipeline once with ``AutoPipelineForText2Image`` (a
hub id or a local ``save_pretrained`` folder), warms it up, then renders each batch of
compatible requests (same size, steps and guidance) in one pipeline call: the requests'
``n`` images are flattened into one list of prompts and seeded generators (image ``i``
of a request uses ``seed + i``), and the output is split back per request. A batch that
runs out of memory is split in halves and retried, and the smaller size is remembered.

Progress goes to ``on_step`` after every denoising step, with a cheap preview of each
request's first image every ``preview_every`` steps: a linear latent-to-RGB guess, or
TAESD when one is configured. An exception from ``on_step`` (cancel, timeout, shutdown)
stops the pipeline within that step and propagates. Only preview steps read the latents
back from the device: the other steps' callbacks leave the GPU's queue running ahead.

On a GPU the options are settings (docs/gpu.md): bf16 or fp16, torch's SDPA attention
(diffusers' default on torch 2), ``channels_last``, and ``torch.compile`` of the UNet (or
transformer) and the VAE's decoder, compiled during warm-up at the service's default size,
guidance and batch sizes so that the first job does not pay for it; the ``reduce-overhead``
mode replays CUDA graphs. Every call runs with the model's device current.

torch and diffusers are imported here only; :mod:`imagegate.generators` imports this
module when the ``diffusers`` backend is chosen.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers
import structlog
import torch
from PIL import Image as PILImage
from PIL.Image import Image

from imagegate.errors import GenerationError, ModelUnavailable
from imagegate.generators import GenerationRequest, StepCallback, StepInfo

if TYPE_CHECKING:
    from imagegate.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_MODEL = "stabilityai/sd-turbo"
PREVIEW_SIZE = 128  # TAESD previews are shrunk to fit; latent previews are smaller already
WARM_UP = GenerationRequest("warm-up", "warm up", None, None, 64, 64, 1, 0.0, 0)
WARM_UP_STEPS = 2  # a compiled model's shapes do not depend on the steps

# Stable Diffusion 1.x/2.x latents to approximate RGB in [-1, 1] (rows: latent channels).
SD_LATENT_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)


@dataclass(frozen=True, slots=True)
class DiffusersOptions:
    device: str = "auto"  # auto: cuda, then mps, then cpu
    dtype: str = "auto"  # auto: bfloat16 (or float16) on a GPU, float32 on the CPU
    scheduler: str | None = None  # a diffusers scheduler class name
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    taesd: str | None = None
    cpu_threads: int | None = None  # on the CPU; default: all cores but one, left to the API
    attention: str = "sdpa"  # sdpa: diffusers' default on torch 2; eager: the classic one
    channels_last: bool = False  # the UNet's and VAE's convolutions in NHWC
    compile: str = "off"  # off, or a torch.compile mode (reduce-overhead: CUDA graphs)
    compile_vae: bool = True  # with compile: the VAE's decoder too
    warm_up: tuple[GenerationRequest, ...] = (WARM_UP,)  # generated in turn by load()


@dataclass(frozen=True, slots=True)
class _Item:
    """One image to generate: request ``request`` of the batch, its image ``index``."""

    request: int
    index: int
    prompt: str
    negative_prompt: str | None
    seed: int


class DiffusersGenerator:
    def __init__(
        self, model: str, options: DiffusersOptions | None = None, preview_every: int = 0
    ) -> None:
        self._model = model
        self.options = options or DiffusersOptions()
        self.preview_every = preview_every
        self.pipeline: Any = None
        self.taesd: Any = None
        self.device = resolve_device(self.options.device)
        self.max_images_per_call: int | None = None  # lowered after running out of memory
        self._lock = threading.Lock()  # a pipeline (its scheduler) runs one call at a time

    @classmethod
    def from_settings(cls, settings: Settings) -> DiffusersGenerator:
        options = DiffusersOptions(
            device=settings.diffusers_device,
            dtype=settings.diffusers_dtype,
            scheduler=settings.diffusers_scheduler,
            attention_slicing=settings.diffusers_attention_slicing,
            vae_tiling=settings.diffusers_vae_tiling,
            cpu_offload=settings.diffusers_cpu_offload,
            taesd=settings.diffusers_taesd,
            cpu_threads=settings.diffusers_cpu_threads,
            attention=settings.diffusers_attention,
            channels_last=settings.diffusers_channels_last,
            compile=settings.diffusers_compile,
            compile_vae=settings.diffusers_compile_vae,
            warm_up=warm_up_requests(settings),
        )
        return cls(settings.model or DEFAULT_MODEL, options, settings.preview_every)

    @property
    def model_name(self) -> str:
        return self._model

    def load(self) -> None:
        """Load the pipeline (once), tune it, and warm it up (``options.warm_up``)."""
        if self.pipeline is not None:
            return
        dtype = resolve_dtype(self.options.dtype, self.device)
        if self.device == "cpu":
            # Torch's thread pool on every core stalls whenever the API (or anything else)
            # takes a core; one core left free keeps both the model and the API steady.
            threads = self.options.cpu_threads or max(1, (os.cpu_count() or 2) - 1)
            torch.set_num_threads(threads)
        pipe = _from_pretrained(self._model, dtype)
        with self._on_device():
            self._configure(pipe)
            self._tune(pipe)
            if self.options.taesd:
                self.taesd = _load_taesd(self.options.taesd, dtype, self.device)
        self.pipeline = pipe
        log.info("diffusers.loaded", model=self._model, device=self.device, dtype=str(dtype))
        self._warm_up()

    def _warm_up(self) -> None:
        """Generate the warm-up requests: a compiled model compiles here, not in a job."""
        started = time.monotonic()
        for request in self.options.warm_up:
            self.generate([request], lambda info: None)
        took = round(time.monotonic() - started, 2)
        log.info("diffusers.warmed_up", seconds=took, compile=self.options.compile)

    def _on_device(self) -> contextlib.AbstractContextManager[Any]:
        """The model's GPU as the thread's current device (each worker thread has its own):
        allocations, generators and kernels go where the weights are."""
        if self.device.startswith("cuda"):
            return torch.cuda.device(self.device)
        return contextlib.nullcontext()

    def _configure(self, pipe: Any) -> None:
        pipe.set_progress_bar_config(disable=True)
        if self.options.scheduler:
            pipe.scheduler = _scheduler(self.options.scheduler, pipe.scheduler.config)
        if self.options.cpu_offload and self.device != "cpu":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if self.options.attention_slicing:
            pipe.enable_attention_slicing()
        if self.options.vae_tiling:
            pipe.vae.enable_tiling()

    def _tune(self, pipe: Any) -> None:
        if self.options.attention == "eager" and not self.options.attention_slicing:
            _eager_attention(pipe)  # (slicing has replaced SDPA already)
        if self.options.channels_last:
            for module in _convolutional(pipe):
                module.to(memory_format=torch.channels_last)
        if self.options.compile != "off":
            _compile(pipe, self.options.compile, self.options.compile_vae)

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        if self.pipeline is None:
            raise GenerationError("The diffusers backend was used before load().")
        if len({(r.width, r.height, r.steps, r.guidance) for r in batch}) > 1:
            raise GenerationError("A batch must share its size, steps and guidance.")
        items = _flatten(batch)
        reporter = _StepReporter(on_step, len(batch), self)
        with self._lock, self._on_device():
            images = self._run_in_chunks(items, batch[0], reporter)
        return _regroup(batch, images)

    def _run_in_chunks(
        self, items: list[_Item], like: GenerationRequest, reporter: _StepReporter
    ) -> list[Image]:
        """One pipeline call per chunk; a chunk that runs out of memory is halved."""
        pending = deque(_chunks(items, self.max_images_per_call))
        images: list[Image] = []
        done = 0
        while pending:
            chunk = pending.popleft()
            reporter.start_chunk(chunk, done=done, planned=done + 1 + len(pending))
            try:
                images += self._call(chunk, like, reporter)
            except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
                if not _is_out_of_memory(exc) or len(chunk) == 1:
                    raise
                pending.extendleft(reversed(self._halve(chunk)))
            else:
                done += 1
        return images

    def _halve(self, chunk: list[_Item]) -> list[list[_Item]]:
        size = (len(chunk) + 1) // 2
        log.warning("diffusers.out_of_memory", images=len(chunk), retry_with=size)
        self.max_images_per_call = min(size, self.max_images_per_call or size)
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        return [chunk[:size], chunk[size:]]

    def _call(
        self, chunk: list[_Item], like: GenerationRequest, reporter: _StepReporter
    ) -> list[Image]:
        negatives = [item.negative_prompt or "" for item in chunk]
        try:
            output = self.pipeline(
                prompt=[item.prompt for item in chunk],
                negative_prompt=negatives if any(negatives) else None,
                width=like.width,
                height=like.height,
                num_inference_steps=like.steps,
                guidance_scale=like.guidance,
                generator=[self._seeded(item.seed) for item in chunk],
                callback_on_step_end=reporter,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        except BaseException:
            # A call stopped mid-way (cancel, out of memory) leaves offloaded models on the
            # GPU and stateful caches filled; the pipeline's own call resets them on success.
            self.pipeline.maybe_free_model_hooks()
            raise
        return list(output.images)

    def _seeded(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def preview(self, latents: torch.Tensor) -> list[Image] | None:
        """Previews of some latents (B, C, h, w): TAESD if loaded, else a linear guess."""
        if latents.ndim != 4:  # packed latents (Flux and others): no cheap preview
            return None
        if self.taesd is not None:
            return _taesd_previews(self.taesd, latents)
        return [latent_preview(latent) for latent in latents]


class _StepReporter:
    """The pipeline's ``callback_on_step_end``: progress over every chunk of a batch, and
    the latest preview of each request (grey until its first chunk has made one)."""

    def __init__(self, on_step: StepCallback, requests: int, generator: DiffusersGenerator) -> None:
        self.on_step, self.generator = on_step, generator
        self.previews: list[Image | None] = [None] * requests
        self.chunks_done, self.chunks_planned = 0, 1
        self.firsts: dict[int, int] = {}  # position in the chunk → request of the batch

    def start_chunk(self, chunk: list[_Item], done: int, planned: int) -> None:
        """Progress counts the steps of every chunk; it steps back when a chunk is split."""
        self.chunks_done, self.chunks_planned = done, planned
        self.firsts = {pos: item.request for pos, item in enumerate(chunk) if item.index == 0}

    def __call__(
        self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        total = int(getattr(pipe, "num_timesteps", 0)) or index + 1
        previews = self._previews(index + 1, tensors["latents"])
        done = self.chunks_done * total
        self.on_step(StepInfo(done + index + 1, self.chunks_planned * total, previews))
        return {}

    def _previews(self, step: int, latents: torch.Tensor) -> list[Image] | None:
        every = self.generator.preview_every
        if not every or step % every or not self.firsts:
            return None
        made = self.generator.preview(latents[list(self.firsts)])
        if made is None:
            return None
        for request, image in zip(self.firsts.values(), made, strict=True):
            self.previews[request] = image
        grey = PILImage.new("RGB", made[0].size, (128, 128, 128))
        return [grey if image is None else image for image in self.previews]


def latent_preview(latent: torch.Tensor) -> Image:
    """A cheap RGB guess at one latent (C, h, w), at the latent's own resolution."""
    latent = latent.detach().float().cpu()
    if latent.shape[0] == len(SD_LATENT_RGB):
        rgb = torch.einsum("chw,cr->rhw", latent, torch.tensor(SD_LATENT_RGB))
        return _to_image((rgb + 1) / 2)
    # Another latent space: the mean of three channel groups, stretched to 0..1.
    if latent.shape[0] < 3:
        latent = latent.repeat(3, 1, 1)
    rgb = torch.stack([group.mean(0) for group in latent.tensor_split(3)])
    low, high = rgb.amin(), rgb.amax()
    return _to_image((rgb - low) / (high - low + 1e-6))


def _to_image(rgb: torch.Tensor) -> Image:
    """(3, h, w) in 0..1 to a PIL image."""
    pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return PILImage.fromarray(pixels, "RGB")


def _taesd_previews(taesd: Any, latents: torch.Tensor) -> list[Image]:
    with torch.no_grad():
        decoded = taesd.decode(latents.to(taesd.dtype)).sample.float().cpu()
    previews = [_to_image((image + 1) / 2) for image in decoded]
    for preview in previews:
        preview.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    return previews


def resolve_device(name: str) -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name != "auto":
        dtype: torch.dtype = getattr(torch, name)
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device == "mps" else torch.float32


def _from_pretrained(model: str, dtype: torch.dtype) -> Any:
    """Load the pipeline, or raise :class:`ModelUnavailable` saying how to get it."""
    _check_local_folder(model)
    try:
        pipeline_class = diffusers.AutoPipelineForText2Image
        return pipeline_class.from_pretrained(model, **{_dtype_keyword(): dtype})
    except OSError as exc:  # the hub's not-found, offline and network errors are OSErrors
        reason = str(exc).strip().splitlines()[0][:300]
        raise ModelUnavailable(_missing_model_message(model, reason)) from None


def _check_local_folder(model: str) -> None:
    path = Path(model).expanduser()
    if path.is_dir() and not (path / "model_index.json").is_file():
        reason = "the folder has no model_index.json, so it is not a diffusers pipeline"
        raise ModelUnavailable(_missing_model_message(model, reason))
    if not path.exists() and _looks_like_path(model):
        raise ModelUnavailable(_missing_model_message(model, "no such folder"))


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def _missing_model_message(model: str, reason: str, setting: str = "IMAGEGATE_MODEL") -> str:
    return (
        f"The diffusers model {model!r} is not available ({reason}). Download it first with "
        f"`hf download {model}` (`huggingface-cli download` before huggingface_hub 1.0; the "
        f"cache is used offline too), or set {setting} to a folder saved by save_pretrained."
    )


def _dtype_keyword() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (and warns on the old name)."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _scheduler(name: str, config: Any) -> Any:
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
        raise ValueError(
            f"Unknown scheduler {name!r}: IMAGEGATE_DIFFUSERS_SCHEDULER must name a diffusers "
            "scheduler class, such as EulerDiscreteScheduler."
        )
    return scheduler_class.from_config(config)


def _load_taesd(source: str, dtype: torch.dtype, device: str) -> Any:
    try:
        taesd = diffusers.AutoencoderTiny.from_pretrained(source, **{_dtype_keyword(): dtype})
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        message = _missing_model_message(source, reason, "IMAGEGATE_DIFFUSERS_TAESD")
        raise ModelUnavailable(message) from None
    return taesd.to(device).eval()


def warm_up_requests(settings: Settings) -> tuple[GenerationRequest, ...]:
    """One tiny generation; with compile on, the shapes jobs will have instead: the default
    size and guidance (guidance above 1 doubles the UNet's batch), alone and as a full
    batch. Another size or batch size compiles on first use, then shapes turn dynamic."""
    if settings.diffusers_compile == "off":
        return (WARM_UP,)
    size, guidance = settings.default_size, settings.default_guidance
    return tuple(
        GenerationRequest(
            "warm-up", "warm up", None, None, size, size, WARM_UP_STEPS, guidance, 0, n
        )
        for n in sorted({1, settings.max_batch})
    )


def _denoiser(pipe: Any) -> Any:
    """The UNet, or the transformer of the DiT pipelines (SD3, FLUX)."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def _convolutional(pipe: Any) -> Iterator[Any]:
    """The models whose convolutions channels_last speeds up: the UNet and the VAE."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if module is not None:
            yield module


def _eager_attention(pipe: Any) -> None:
    """diffusers' classic attention processors instead of SDPA, where a model has them."""
    for module in _convolutional(pipe):
        if hasattr(module, "set_default_attn_processor"):
            module.set_default_attn_processor()


def _compile(pipe: Any, mode: str, vae: bool) -> None:
    """Compile in place: the pipeline calls the UNet's forward and the VAE's decode. The
    compilation itself happens on the first calls, which warm-up makes."""
    _denoiser(pipe).compile(mode=mode)
    if vae and getattr(pipe, "vae", None) is not None:
        pipe.vae.decode = torch.compile(pipe.vae.decode, mode=mode)


def _is_out_of_memory(exc: RuntimeError) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _flatten(batch: Sequence[GenerationRequest]) -> list[_Item]:
    return [
        _Item(r, i, request.prompt, request.negative_prompt, request.seed + i)
        for r, request in enumerate(batch)
        for i in range(request.n)
    ]


def _chunks(items: list[_Item], size: int | None) -> list[list[_Item]]:
    size = size or len(items)
    return [items[start : start + size] for start in range(0, len(items), size)]


def _regroup(batch: Sequence[GenerationRequest], images: list[Image]) -> list[list[Image]]:
    groups, start = [], 0
    for request in batch:
        groups.append(images[start : start + request.n])
        start += request.n
    return groups
