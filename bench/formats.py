"""What each output format costs: encoding CPU time and bytes per image at 512x512, for
png, webp and jpeg (at the default quality, 100, and at 80), with the provenance inside,
on two sets of images: what the sketch backend draws from varied prompts (flat colours,
which PNG compresses very well), and the same with photographic texture added (blurred
noise, closer to what a diffusion model makes). The ThumbHash placeholder that every
image gets is timed beside them.

Writes ``bench/results/formats.json``.

    .venv/bin/python bench/formats.py [--images 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from PIL import Image as PILImage
from PIL import ImageFilter
from PIL.Image import Image

from imagegate.generators import GenerationRequest
from imagegate.generators.sketch import SketchGenerator
from imagegate.storage.encoding import encode, placeholder

RESULTS = Path(__file__).parent / "results"
PROMPTS = [
    "a lighthouse at dusk",
    "a crowded night market in the rain, neon signs",
    "a bowl of fruit on a wooden table, oil painting",
    "snowy mountains above a frozen lake at sunrise",
    "a robot reading in a library, isometric",
    "a field of sunflowers under a storm",
]
VARIANTS = [("png", None), ("webp", None), ("webp", 80), ("jpeg", None), ("jpeg", 80)]
PROVENANCE = {
    "prompt": "a lighthouse at dusk",
    "seed": "1",
    "model": "sketch-v1",
    "size": "512x512",
    "steps": "30",
    "job_id": "0" * 36,
}


def images(count: int) -> list[Image]:
    generator = SketchGenerator()
    made: list[Image] = []
    for index in range(count):
        request = GenerationRequest(
            job_id=str(index),
            prompt=PROMPTS[index % len(PROMPTS)],
            negative_prompt=None,
            style=None,
            width=512,
            height=512,
            steps=30,
            guidance=7.5,
            seed=index,
            n=1,
        )
        made += generator.generate([request], lambda _: None)[0]
    return made


def textured(pictures: list[Image]) -> list[Image]:
    """Each picture with blurred noise over it: fine detail everywhere, as in a photo."""
    made = []
    for index, picture in enumerate(pictures):
        grain = PILImage.effect_noise((512, 512), 40 + index % 20).filter(
            ImageFilter.GaussianBlur(1.2)
        )
        made.append(PILImage.blend(picture, PILImage.merge("RGB", [grain] * 3), 0.35))
    return made


def cpu_ms(action: Any, pictures: list[Image]) -> tuple[float, list[Any]]:
    started = time.process_time()
    results = [action(picture) for picture in pictures]
    return (time.process_time() - started) * 1000 / len(pictures), results


def _encode(picture: Image, kind: str, quality: int | None) -> Any:
    return encode(picture, kind, quality, PROVENANCE)


def measure(pictures: list[Image], rounds: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for round_ in range(rounds):  # the formats in turn, each round: side by side
        for kind, quality in VARIANTS:
            name = kind if quality is None else f"{kind} q{quality}"
            ms, encoded = cpu_ms(partial(_encode, kind=kind, quality=quality), pictures)
            row = rows.setdefault(name, {"cpu_ms": [], "bytes": []})
            row["cpu_ms"].append(ms)
            if round_ == 0:
                row["bytes"] = [len(e.data) for e in encoded]
        ms, _ = cpu_ms(placeholder, pictures)
        name = "placeholder (ThumbHash + data URL)"
        rows.setdefault(name, {"cpu_ms": [], "bytes": []})["cpu_ms"].append(ms)
    return {
        name: {
            "cpu_ms_median": round(statistics.median(row["cpu_ms"]), 2),
            "bytes_median": round(statistics.median(row["bytes"])) if row["bytes"] else None,
        }
        for name, row in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    flat = images(args.images)
    sets = {"sketch": flat, "textured": textured(flat)}
    summary = {name: measure(pictures, args.rounds) for name, pictures in sets.items()}
    for name, rows in summary.items():
        png = rows["png"]["bytes_median"]
        print(f"\n{name} images, 512x512")
        print(f"{'format':36} {'CPU ms/image':>12} {'bytes/image':>12} {'vs png':>7}")
        for variant, row in rows.items():
            size = row["bytes_median"]
            ratio = f"{size / png:.2f}" if size else ""
            print(f"{variant:36} {row['cpu_ms_median']:12.2f} {size or '':>12} {ratio:>7}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "formats.json").write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "images": args.images,
                "rounds": args.rounds,
                "size": "512x512",
                "results": summary,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
