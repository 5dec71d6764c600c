"""The diffusers backend on a GPU: the raw pipeline, the service, and the CUDA options.

The models are SD 1.5 (512 px) and SDXL (1024 px) with random weights in their published
architectures (generators/random_sd.py: the compute of the trained ones, no download),
built on the GPU and saved, then loaded through ``from_pretrained`` as users load them.
At 4 steps (no guidance, as distilled models run) and 30 (with the family's guidance),
batch 1, 4 and 8, it measures:

1. raw: ``pipe(...)`` called directly in a loop after a warm-up; images/s and s/image.
   This is the limit.
2. service (bench/gpu_service.py): ``imagegate serve`` with the diffusers backend, SQLite,
   output moderation off and on, ``IMAGEGATE_MAX_BATCH`` = the batch; N concurrent jobs
   through ``POST /v1/jobs``, each followed over SSE. Images/s and their ratio to raw,
   the batching speed-up kept, and the per-job overhead (end to end less generation).
3. options: ``channels_last`` and ``torch.compile`` modes against plain bf16/fp16.

Targets: the service keeps >= 95% of raw images/s at every batch size, and >= 90% of
the raw batch speed-up. Each case is skipped, and listed so, once the time budget
(``--budget-s``) cannot hold it, so one run fits its slot; JSON is rewritten after
every case (``bench/results/gpu.json``) and a table printed at the end.

    python bench/gpu.py                  # on the GPU machine: scripts/gpu_run.sh
    .venv/bin/python bench/gpu.py --tiny # dry run on a CPU: the small configs, 64 px
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.gpu_report import Report, print_table, targets
from bench.gpu_service import ServiceCase, gpu_peak_bytes, measure, service

from imagegate.generators import GenerationRequest
from imagegate.generators.diffusers import WARM_UP_STEPS, DiffusersGenerator, DiffusersOptions
from imagegate.generators.families import family_defaults
from imagegate.generators.random_sd import build_random_sd

RESULTS = Path(__file__).parent / "results"
OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile": "default"},
    "compile-reduce-overhead": {"compile": "reduce-overhead"},  # CUDA graphs
    "compile+channels_last": {"compile": "default", "channels_last": True},
    "compile-max-autotune": {"compile": "max-autotune"},
}
COMPILE_ESTIMATE_S = 120.0  # UNet and VAE decode through inductor, before any measure
LONG_CALL_S = 4.0


@dataclass(frozen=True)
class Plan:
    device: str
    scale: str  # random_sd's: "full" on the GPU, "small" for the dry run
    sizes: dict[str, int]
    steps: tuple[int, ...] = (4, 30)
    batches: tuple[int, ...] = (1, 4, 8)
    repeats: int = 3
    service_steps: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"sd15": (4, 30), "sdxl": (4,)}
    )
    options: tuple[str, ...] = ("channels_last", "compile", "compile-reduce-overhead")
    option_arch: str = "sd15"
    option_steps: int = 30
    option_batch: int = 4


def guidance(arch: str, steps: int) -> float:
    """Few steps: no classifier-free guidance (as distilled models run); else the family's."""
    return 0.0 if steps <= 4 else family_defaults(arch).guidance


class Budget:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + seconds

    def allows(self, estimate_s: float) -> bool:
        return time.monotonic() + estimate_s <= self.deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def call(pipe: Any, device: str, size: int, steps: int, batch: int, scale: float) -> None:
    import torch

    pipe(
        prompt=[f"a lighthouse at dusk, take {i}" for i in range(batch)],
        width=size,
        height=size,
        num_inference_steps=steps,
        guidance_scale=scale,
        generator=[torch.Generator(device).manual_seed(i) for i in range(batch)],
    )


def time_calls(
    pipe: Any, device: str, size: int, steps: int, batch: int, scale: float, repeats: int
) -> float:
    """Median seconds of one ``pipe(...)`` call, after one call at the same shapes; calls
    longer than ``LONG_CALL_S`` are repeated twice only (SDXL at 30 steps, batch 8)."""
    call(pipe, device, size, WARM_UP_STEPS, batch, scale)
    seconds: list[float] = []
    while len(seconds) < repeats and not (len(seconds) >= 2 and seconds[0] > LONG_CALL_S):
        sync(device)
        started = time.perf_counter()
        call(pipe, device, size, steps, batch, scale)
        sync(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def load(
    folder: Path, plan: Plan, warm_up: tuple[GenerationRequest, ...] = (), **options: Any
) -> DiffusersGenerator:
    """The backend's own loading (``from_pretrained``, device, options, warm-up)."""
    generator = DiffusersGenerator(
        str(folder), DiffusersOptions(device=plan.device, warm_up=warm_up, **options)
    )
    generator.load()
    return generator


def release(generator: DiffusersGenerator | None) -> None:
    import torch

    del generator
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_raw(arch: str, folder: Path, plan: Plan, report: Report, budget: Budget) -> None:
    generator = load(folder, plan)
    size, per_image_step = plan.sizes[arch], 0.0
    for steps in plan.steps:
        for batch in plan.batches:
            case = f"raw {arch} {size}px {steps} steps batch {batch}"
            if not budget.allows(per_image_step * batch * (steps * plan.repeats + WARM_UP_STEPS)):
                report.skip(case, "time budget")
                continue
            scale = guidance(arch, steps)
            seconds = time_calls(
                generator.pipeline, plan.device, size, steps, batch, scale, plan.repeats
            )
            per_image_step = seconds / (batch * steps)
            report.add("raw", row(arch, size, steps, batch, scale) | rates(seconds, batch))
            print(f"{case}: {batch / seconds:.2f} images/s", flush=True)
    release(generator)


def row(arch: str, size: int, steps: int, batch: int, scale: float) -> dict[str, Any]:
    return {"arch": arch, "size": size, "steps": steps, "batch": batch, "guidance": scale}


def rates(seconds: float, batch: int) -> dict[str, float]:
    return {
        "seconds_per_call": round(seconds, 4),
        "seconds_per_image": round(seconds / batch, 4),
        "images_per_s": round(batch / seconds, 3),
    }


def measure_options(folder: Path, plan: Plan, report: Report, budget: Budget) -> None:
    arch, steps, batch = plan.option_arch, plan.option_steps, plan.option_batch
    size, scale = plan.sizes[arch], guidance(arch, steps)
    shapes = (
        GenerationRequest(
            "warm-up", "warm up", None, None, size, size, WARM_UP_STEPS, scale, 0, batch
        ),
    )
    plain_s: float | None = None
    for name in ("plain", *plan.options):
        if not budget.allows(COMPILE_ESTIMATE_S if "compile" in name else 30.0):
            report.skip(f"option {name}", "time budget")
            continue
        started = time.monotonic()
        try:
            generator = load(folder, plan, shapes, **OPTIONS[name])
            load_s = time.monotonic() - started
            seconds = time_calls(
                generator.pipeline, plan.device, size, steps, batch, scale, plan.repeats
            )
            release(generator)
        except Exception as exc:  # a mode this torch cannot compile: say so, go on
            report.skip(f"option {name}", f"failed: {type(exc).__name__}: {exc}")
            continue
        plain_s = plain_s or seconds
        figures = rates(seconds, batch) | {
            "speedup_vs_plain": round(plain_s / seconds, 3),
            "load_and_warm_up_s": round(load_s, 1),
        }
        report.add("options", {"option": name} | row(arch, size, steps, batch, scale) | figures)
        print(f"option {name}: {batch / seconds:.2f} images/s ({plain_s / seconds:.2f}x)")


def measure_services(
    moderation: bool,
    folders: dict[str, Path],
    plan: Plan,
    report: Report,
    budget: Budget,
    work: Path,
) -> None:
    """Each model at each batch size, one server each; moderation off first, since a budget
    cut should drop the moderated repeats before the plain figures."""
    raw = {(r["arch"], r["steps"], r["batch"]): r["images_per_s"] for r in report.data["raw"]}
    startup_s = 45.0  # until the first start is measured
    for arch, folder in folders.items():
        single: dict[int, float] = {}  # steps → the service's images/s at batch 1
        for batch in plan.batches:
            case = ServiceCase(arch, folder, plan.sizes[arch], plan.device, batch, moderation)
            name = f"service {arch} batch {batch} moderation {'on' if moderation else 'off'}"
            if not budget.allows(startup_s + service_estimate(raw, case, plan)):
                report.skip(name, "time budget")
                continue
            began = time.monotonic()
            try:
                with service(case, work) as (http, client):
                    startup_s = time.monotonic() - began
                    for steps in plan.service_steps[arch]:
                        figures = measure(client, case, steps, guidance(arch, steps))
                        figures["gpu_peak_allocated_bytes"] = gpu_peak_bytes(http)
                        figures |= against_raw(raw, case, steps, figures["images_per_s"], single)
                        figures["startup_s"] = round(startup_s, 1)
                        report.add("service", service_row(case, steps) | figures)
                        print(f"{name}, {steps} steps: {figures['images_per_s']:.2f} images/s")
            except Exception as exc:  # one broken case must not cost the others' figures
                report.skip(name, f"failed: {type(exc).__name__}: {exc}")


def service_estimate(
    raw: dict[tuple[str, int, int], float], case: ServiceCase, plan: Plan
) -> float:
    """Seconds of generation a case needs: its warm-up, throughput and overhead batches."""
    calls = 1 + 3 + max(2, 8 // case.batch)
    return sum(
        calls * case.batch / raw.get((case.arch, steps, case.batch), case.batch)
        for steps in plan.service_steps[case.arch]
    )


def service_row(case: ServiceCase, steps: int) -> dict[str, Any]:
    scale = guidance(case.arch, steps)
    return row(case.arch, case.size, steps, case.batch, scale) | {"moderation": case.moderation}


def against_raw(
    raw: dict[tuple[str, int, int], float],
    case: ServiceCase,
    steps: int,
    rate: float,
    single: dict[int, float],
) -> dict[str, float | None]:
    """The ratio to the raw pipeline's images/s, and the share of its batch speed-up kept."""
    limit, raw_single = raw.get((case.arch, steps, case.batch)), raw.get((case.arch, steps, 1))
    if case.batch == 1:
        single[steps] = rate
    kept = None
    if case.batch > 1 and steps in single and limit and raw_single:
        kept = round((rate / single[steps]) / (limit / raw_single), 3)
    return {"ratio_to_raw": round(rate / limit, 3) if limit else None, "batch_speedup_kept": kept}


def machine(device: str) -> dict[str, Any]:
    import diffusers
    import torch

    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    return {
        "gpu": gpu,
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
    }


def make_plan(args: argparse.Namespace) -> Plan:
    if args.tiny:
        return Plan(
            device="cpu",
            scale="small",
            sizes={"sd15": 64, "sdxl": 64},
            repeats=2,
            options=tuple(args.options or ("channels_last",)),
            option_steps=4,
        )
    plan = Plan(device=args.device, scale="full", sizes={"sd15": 512, "sdxl": 1024})
    return replace(plan, options=tuple(args.options)) if args.options else plan


def build(plan: Plan, work: Path, report: Report) -> dict[str, Path]:
    folders = {}
    dtype = "bfloat16" if plan.device.startswith("cuda") else "float32"
    for arch in plan.sizes:
        started = time.monotonic()
        folders[arch] = build_random_sd(
            arch, work / arch, scale=plan.scale, dtype=dtype, device=plan.device
        )
        report.data["build_s"][arch] = round(time.monotonic() - started, 1)
    report.save()
    return folders


def run(plan: Plan, report: Report, budget: Budget, work: Path) -> None:
    folders = build(plan, work, report)
    for arch, folder in folders.items():
        measure_raw(arch, folder, plan, report, budget)
    for moderation in (False, True):
        measure_services(moderation, folders, plan, report, budget, work)
    measure_options(folders[plan.option_arch], plan, report, budget)
    report.data["targets"] = targets(report.data)
    report.data["seconds"] = round(budget.elapsed(), 1)
    report.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="dry run: small configs on the CPU")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="default: 420 (GPU), 900 (tiny)"
    )
    parser.add_argument(
        "--options", nargs="*", choices=[name for name in OPTIONS if name != "plain"]
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    plan = make_plan(args)
    out = args.out or RESULTS / ("gpu-dry-run.json" if args.tiny else "gpu.json")
    budget = Budget(args.budget_s or (900 if args.tiny else 420))
    header = {
        "benchmark": "gpu",
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": "random weights in the published architectures (generators/random_sd.py)",
        "machine": machine(plan.device),
        "plan": asdict(plan),
        "build_s": {},
    }
    report = Report(out, header)
    with tempfile.TemporaryDirectory(prefix="imagegate-gpu-") as work:
        run(plan, report, budget, Path(work))
    print_table(report.data)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
