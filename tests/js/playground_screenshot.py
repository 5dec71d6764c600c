"""Makes docs/playground.png: the playground in Chromium against a fresh ``imagegate serve``
(sketch backend), after a few prompts.

    .venv/bin/python -m tests.js.playground_screenshot [PATH]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser import FLAGS, chromium_path
from tests.js.support import ROOT
from tests.processes import serve

PROMPTS = [
    ("a red bicycle leaning on a wall", "pixel_art", "512x512"),
    ("a harbour at noon", "oil_painting", "768x512"),
    ("a lighthouse at dusk", "cinematic", "768x512"),
]


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as data:
        env = {"IMAGEGATE_DATA_DIR": data, "IMAGEGATE_PREVIEW_EVERY": "3"}
        with serve(env, Path(data) / "serve.log", workers=1) as api, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 1000})
            page.goto(f"{str(api.base_url).rstrip('/')}/playground")
            page.wait_for_function("() => document.getElementById('style').options.length > 1")
            for seed, (prompt, style, size) in enumerate(PROMPTS, start=11):
                page.fill("#prompt", prompt)
                page.select_option("#style", style)
                page.select_option("#size", size)
                page.fill("#seed", str(seed))
                page.click("#submit")
                page.wait_for_function("() => !document.getElementById('submit').disabled")
            page.wait_for_function("() => document.querySelectorAll('#gallery li').length == 3")
            page.wait_for_timeout(800)  # the blur-to-sharp transitions end
            page.screenshot(path=str(target), full_page=True)
            browser.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "playground.png")
