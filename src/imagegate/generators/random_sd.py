"""Stable Diffusion pipelines with random weights in the published architectures.

``architectures/<arch>/`` holds the configs, written from the published models' own
config files (``architecture.json`` names its sources): ``sd15`` (Stable Diffusion 1.5),
``sdxl`` (SDXL 1.0 base, both text encoders) and ``sd-turbo`` (SD 2.1's shapes at 512 px).
:func:`build_random_sd` makes each model from its config with random weights and saves
the pipeline with ``save_pretrained``, so the diffusers backend loads it through the same
``from_pretrained`` path as a downloaded one. **It draws noise**, at exactly the compute
that the trained weights cost: that is what it is for (benchmarks without a download).

The tokenizers are tiny_sd's byte tokenizer (514 ids, below CLIP's 49,408): a vocabulary
costs the UNet nothing, and the text encoders keep CLIP's full embedding table.

``scale="small"`` shrinks every width, depth and resolution (8 to 32 channels, 64 px) but
keeps the block types, their count and the way the parts fit together, so the same code
builds a pipeline of a few hundred kilobytes that a CPU test runs end to end.
:func:`count_parameters` builds on torch's ``meta`` device, which allocates nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from imagegate.generators.tiny_sd import byte_tokenizer, byte_vocabulary

ARCHITECTURES = ("sd15", "sdxl", "sd-turbo")
FOLDER = Path(__file__).parent / "architectures"
SEED = 0
Scale = Literal["full", "small"]
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
TOKENIZERS = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}
SMALL_RESOLUTION = 64
SMALL_TIME_EMBED = 8  # SDXL's addition_time_embed_dim, shrunk
FIGURE = re.compile(r"^(\d+(?:\.(\d+))?)([MB])$")


@dataclass(frozen=True, slots=True)
class Architecture:
    key: str
    name: str
    pipeline: str  # a diffusers pipeline class
    resolution: int  # the images' default side, in pixels
    components: dict[str, str]  # component → its diffusers or transformers class
    configs: dict[str, dict[str, Any]]  # component → its config (or the scheduler's)
    pipeline_options: dict[str, Any]
    published: dict[str, str]  # "unet" or "text_encoder+text_encoder_2" → "2.6B"
    sources: tuple[str, ...]


@cache
def _read(key: str) -> dict[str, Any]:
    if key not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {key!r}: choose one of {', '.join(ARCHITECTURES)}.")
    folder = FOLDER / key
    spec: dict[str, Any] = json.loads((folder / "architecture.json").read_text())
    spec["configs"] = {
        name: json.loads((folder / f"{name}.json").read_text()) for name in spec["components"]
    }
    return spec


def architecture(key: str, scale: Scale = "full") -> Architecture:
    spec = _read(key)
    configs = {name: dict(config) for name, config in spec["configs"].items()}
    for name in TEXT_ENCODERS:
        if name in configs:  # the ids of the byte tokenizer, whatever the scale
            configs[name] |= {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    if scale == "small":
        configs = _small(configs)
    return Architecture(
        key=key,
        name=spec["name"],
        pipeline=spec["pipeline"],
        resolution=SMALL_RESOLUTION if scale == "small" else spec["resolution"],
        components=dict(spec["components"]),
        configs=configs,
        pipeline_options=dict(spec.get("pipeline_options", {})),
        published=dict(spec["published_parameters"]),
        sources=tuple(spec["sources"]),
    )


def _small(configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    small = dict(configs)
    texts = [name for name in TEXT_ENCODERS if name in configs]
    for name in texts:
        small[name] = configs[name] | {
            "vocab_size": len(byte_vocabulary()),
            "hidden_size": 16,
            "intermediate_size": 32,
            "projection_dim": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        }
    small["vae"] = _small_vae(configs["vae"])
    cross = sum(small[name]["hidden_size"] for name in texts)  # SDXL concatenates both
    small["unet"] = _small_unet(configs["unet"], cross, small[texts[-1]]["projection_dim"])
    return small


def _small_vae(config: dict[str, Any]) -> dict[str, Any]:
    blocks = len(config["block_out_channels"])  # kept: the latents stay 8 times smaller
    return config | {
        "block_out_channels": [8] * blocks,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": SMALL_RESOLUTION,
    }


def _small_unet(config: dict[str, Any], cross_attention_dim: int, pooled: int) -> dict[str, Any]:
    heads = config["attention_head_dim"]
    small = config | {
        "sample_size": SMALL_RESOLUTION // 8,
        "block_out_channels": [channels // 40 for channels in config["block_out_channels"]],
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": [2] * len(heads) if isinstance(heads, list) else 2,
    }
    if isinstance(config.get("transformer_layers_per_block"), list):
        depths = config["transformer_layers_per_block"]
        small["transformer_layers_per_block"] = [min(depth, 2) for depth in depths]
    if config.get("addition_embed_type") == "text_time":
        # The pooled text embedding and six size and crop numbers, each embedded.
        small["addition_time_embed_dim"] = SMALL_TIME_EMBED
        small["projection_class_embeddings_input_dim"] = pooled + 6 * SMALL_TIME_EMBED
    return small


def build_random_sd(
    key: str,
    path: Path,
    *,
    scale: Scale = "full",
    dtype: str = "float16",
    device: str = "cpu",
) -> Path:
    """Build the pipeline with random weights and ``save_pretrained`` it into ``path``.

    The weights are made in ``dtype`` on ``device``: a GPU makes SDXL's in seconds, and
    a CPU needs its memory once (5 GB for SDXL's UNet in float16), not twice."""
    import diffusers

    arch = architecture(key, scale)
    parts: dict[str, Any] = {}
    with _default_dtype(dtype), _seeded(device):
        for name, class_name in arch.components.items():
            if name == "scheduler":
                parts[name] = getattr(diffusers, class_name).from_config(arch.configs[name])
            else:
                parts[name] = _model(class_name, arch.configs[name]).eval()
    for encoder, tokenizer in TOKENIZERS.items():
        if encoder in parts:
            parts[tokenizer] = byte_tokenizer(path / tokenizer)
    pipeline = getattr(diffusers, arch.pipeline)(**parts, **arch.pipeline_options)
    pipeline.save_pretrained(path)
    return path


@contextmanager
def _default_dtype(dtype: str) -> Iterator[None]:
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@contextmanager
def _seeded(device: str) -> Iterator[None]:
    """Models made on ``device``, from the same seed: the same build gives the same weights."""
    import torch

    with torch.random.fork_rng(), torch.device(device):
        torch.manual_seed(SEED)
        yield


def _model(class_name: str, config: dict[str, Any]) -> Any:
    """One model with random weights: a diffusers model, or a transformers CLIP text model."""
    if class_name.startswith("CLIPText"):
        import transformers

        return getattr(transformers, class_name)(transformers.CLIPTextConfig(**config))
    import diffusers

    return getattr(diffusers, class_name)(**config)


def count_parameters(key: str, scale: Scale = "full") -> dict[str, int]:
    """Each model's parameters, built on the ``meta`` device: shapes without memory."""
    import torch

    arch = architecture(key, scale)
    counts = {}
    for name, class_name in arch.components.items():
        if name == "scheduler":
            continue
        with torch.device("meta"):
            model = _model(class_name, arch.configs[name])
        counts[name] = sum(parameter.numel() for parameter in model.parameters())
    return counts


def published_counts(key: str) -> dict[str, tuple[int, int]]:
    """The published figures, as (value, how far a count may be from it): the figure's
    own rounding ("2.6B" is 2.55 to 2.65 billion), or 1% where that is wider."""
    published = {}
    for parts, figure in architecture(key).published.items():
        value, rounding = _parse_figure(figure)
        published[parts] = (value, max(rounding, value // 100))
    return published


def _parse_figure(figure: str) -> tuple[int, int]:
    """ "83.7M" → (83_700_000, 50_000): the value, and half its last digit's unit."""
    match = FIGURE.match(figure)
    if match is None:
        raise ValueError(f"A parameter count is written like 860M or 2.6B, not {figure!r}.")
    number, decimals, unit = match.groups()
    scale = 10**6 if unit == "M" else 10**9
    last_digit = scale // 10 ** len(decimals or "")
    return round(float(number) * scale), last_digit // 2


def parts_total(counts: dict[str, int], parts: str) -> int:
    """The count of ``"unet"``, or of ``"text_encoder+text_encoder_2"`` together."""
    return sum(counts[name] for name in parts.split("+"))
