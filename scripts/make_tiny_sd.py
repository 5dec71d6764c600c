"""Build the tiny random-weight Stable Diffusion pipeline into a folder.

    python scripts/make_tiny_sd.py [FOLDER]      # default: imagegate-data/tiny-sd

It draws noise: use it to try the diffusers backend without a download or a GPU, e.g.
``IMAGEGATE_BACKEND=diffusers IMAGEGATE_MODEL=imagegate-data/tiny-sd IMAGEGATE_DEFAULT_SIZE=64``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imagegate.generators.tiny_sd import build_tiny_sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("imagegate-data/tiny-sd"))
    folder = build_tiny_sd(parser.parse_args().folder)
    print(f"built {folder}: IMAGEGATE_BACKEND=diffusers IMAGEGATE_MODEL={folder}")


if __name__ == "__main__":
    main()
