"""Build a Stable Diffusion pipeline with random weights in a published architecture.

    python scripts/make_random_sd.py ARCH FOLDER [--scale small] [--dtype float16] [--device cpu]
    python scripts/make_random_sd.py ARCH --counts     # parameters against the published figures

ARCH is sd15, sdxl or sd-turbo (src/imagegate/generators/architectures/ holds the configs
and their sources). It draws noise at the compute that the trained model costs: serve it
with ``IMAGEGATE_BACKEND=diffusers IMAGEGATE_MODEL=FOLDER`` to measure, not to look at.
``--scale small`` builds the same architecture a few hundred kilobytes large, for a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imagegate.generators.random_sd import (
    ARCHITECTURES,
    build_random_sd,
    count_parameters,
    parts_total,
    published_counts,
)


def print_counts(arch: str) -> None:
    counts = count_parameters(arch)
    for name, count in counts.items():
        print(f"{arch:>8} {name:<16} {count:>15,}")
    for parts, (figure, tolerance) in published_counts(arch).items():
        measured = parts_total(counts, parts)
        verdict = "ok" if abs(measured - figure) <= tolerance else "OFF"
        print(
            f"{arch:>8} {parts:<30} {measured:>15,} published {figure:>15,} "
            f"({(measured - figure) / figure:+.2%}, allowed ±{tolerance / figure:.1%}): {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=ARCHITECTURES)
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--scale", choices=["full", "small"], default="full")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--device", default="cpu", help="where the weights are made: cpu, cuda")
    parser.add_argument("--counts", action="store_true", help="print parameter counts only")
    args = parser.parse_args()
    if args.counts:
        print_counts(args.arch)
        return
    if args.folder is None:
        parser.error("FOLDER is needed to build (or pass --counts)")
    folder = build_random_sd(
        args.arch, args.folder, scale=args.scale, dtype=args.dtype, device=args.device
    )
    print(f"built {folder}: IMAGEGATE_BACKEND=diffusers IMAGEGATE_MODEL={folder}")


if __name__ == "__main__":
    main()
