"""A tiny Stable Diffusion pipeline with random weights, built locally in about a second.

It has the shape of Stable Diffusion 1.x (a CLIP text encoder and tokenizer, a
conditional UNet over 4-channel latents, a VAE that scales by 8, and a DDIM scheduler),
but every part is a few kilobytes and its weights are random. **It draws noise**: it
proves the ``diffusers`` code path (loading through
``AutoPipelineForText2Image.from_pretrained``, batching, seeds, progress, previews,
cancellation) on a CPU without any download. It says nothing about image quality.

The build is deterministic: the same version of torch and diffusers always gives the
same weights. ``scripts/make_tiny_sd.py`` is its command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED = 0
MAX_TOKENS = 77
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def build_tiny_sd(path: Path) -> Path:
    """Build the pipeline and ``save_pretrained`` it into ``path``; returns ``path``."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(SEED)
    tokenizer = byte_tokenizer(path / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=_unet(),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def _unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,  # 8x8 latents: 64x64 images by default
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),  # four blocks: a scale factor of 8, like SD
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
    )


def _text_encoder(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def _scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def byte_tokenizer(folder: Path) -> Any:
    """A byte-level CLIP tokenizer without merges, saved in ``folder``: every character is
    one token, and its 514 ids are below any CLIP vocabulary's size (random_sd.py uses it
    beside full-size text encoders: a vocabulary costs the UNet nothing).

    Its vocab.json and merges.txt stay next to the tokenizer.json that ``save_pretrained``
    adds, so that transformers releases with and without fast tokenizers both load it.
    """
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(byte_vocabulary())}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)


def byte_vocabulary() -> list[str]:
    """The special tokens, then CLIP's 256 byte characters, alone and ending a word."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
    return [*SPECIAL_TOKENS, *chars, *(c + "</w>" for c in chars)]
