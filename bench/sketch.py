"""How long the built-in sketch renderer takes to draw 512x512 (target: at most 100 ms).

.venv/bin/python bench/sketch.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from imagegate.generators.sketch_scene import render
from imagegate.prompts.styles import STYLES
from imagegate.storage.encoding import encode_png

RESULTS = Path(__file__).parent / "results"
PROMPTS = ["a lighthouse at dusk", "a forest cabin at night", "red city skyline", "flowers"]


def main() -> None:
    render_ms: list[float] = []
    encode_ms: list[float] = []
    for style in [None, *STYLES]:
        for seed, prompt in enumerate(PROMPTS):
            started = time.perf_counter()
            image = render(prompt, style, 512, 512, seed)
            drawn = time.perf_counter()
            encode_png(image, {"prompt": prompt})
            render_ms.append((drawn - started) * 1000)
            encode_ms.append((time.perf_counter() - drawn) * 1000)
    result = {
        "benchmark": "sketch",
        "size": "512x512",
        "images": len(render_ms),
        "render_ms_median": round(statistics.median(render_ms), 2),
        "render_ms_max": round(max(render_ms), 2),
        "png_encode_ms_median": round(statistics.median(encode_ms), 2),
        "target": "render_ms_max <= 100",
    }
    print(
        f"sketch 512x512 over {len(render_ms)} prompt/style pairs: render median "
        f"{result['render_ms_median']} ms, max {result['render_ms_max']} ms; "
        f"PNG encode median {result['png_encode_ms_median']} ms"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sketch.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
