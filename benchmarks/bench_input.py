"""Input-pipeline throughput: today's PIL path against the tensor path, on real photos.

For the paper's training transform, the "mild" one and the test transform, images/s of

* ``pil``: ``fusnet.data.load_rgb`` (PIL open + decode + RGB) and the v1 transform of
  ``fusnet.data.build_transform`` (what every dataset does today);
* ``tensor-v2``: ``read_image_tensor`` (``read_file`` + ``decode_jpeg``) and
  ``build_tensor_transform(kernels="v2")``: torchvision's v2 kernels on uint8;
* ``tensor``: the same with ``kernels="fast"`` (the default of the tensor path: the
  gather rotation and the float colour jitter of ``fusnet.data.tensor_io``).

One process, one torch thread, one image at a time, files read from disk each pass (in
the page cache after the warm-up pass). Every trial times one pass over all the images
for every recipe and arm, arms in a rotating order, so that load drifting during the
run hits all arms alike; the ratio against ``pil`` is taken per trial, and the table
gives its geometric mean and 95% t-interval over trials, both by wall clock and by the
process's own CPU time (``time.thread_time``: on shared cores it leaves out the time
other processes held the core). PASS when the wall-clock interval of ``tensor`` / ``pil``
lies above 2 for all three recipes (issue 11: "at least 2x").

    python benchmarks/bench_input.py                       # 300 CUB photos, 7 trials, ~3 min
    python benchmarks/bench_input.py --quick               # 60 photos, 3 trials
    python benchmarks/bench_input.py --profile             # also ms per step of each recipe
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import PIL.features
import torch
import torchvision
from machine import machine_info  # benchmarks/ is the script's folder
from scipy import stats

from fusnet.data import build_dataset, build_transform, load_rgb
from fusnet.data.tensor_io import build_tensor_transform, read_image_tensor

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"train": True, "augment": "paper"},
    "mild": {"train": True, "augment": "mild"},
    "test": {"train": False, "augment": "paper"},
}
ARMS = ("pil", "tensor-v2", "tensor")
SHARED_DATA = Path(os.environ.get("FUSNET_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pipelines(size: int) -> dict[tuple[str, str], tuple[Callable, Callable]]:
    """(recipe, arm) -> (loader, transform)."""
    out: dict[tuple[str, str], tuple[Callable, Callable]] = {}
    for recipe, kw in RECIPES.items():
        out[recipe, "pil"] = (load_rgb, build_transform(size, **kw))
        out[recipe, "tensor-v2"] = (read_image_tensor, build_tensor_transform(size, kernels="v2", **kw))
        out[recipe, "tensor"] = (read_image_tensor, build_tensor_transform(size, kernels="fast", **kw))
    return out


def one_pass(files: list[Path], loader: Callable, transform: Callable) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to load and transform every file once."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for path in files:
        x = transform(loader(path))  # (3, S, S) float32
    assert x.dtype == torch.float32
    return time.perf_counter() - wall, time.thread_time() - cpu


def ratio_summary(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean and 95% t-interval of per-trial ratios."""
    logs = np.log(np.asarray(ratios))
    if len(logs) < 2:
        return float(np.exp(logs.mean())), math.nan, math.nan
    half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
    return float(np.exp(logs.mean())), float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def profile_steps(files: list[Path], size: int, passes: int = 3) -> None:
    """CPU ms per image of each step of each recipe, image by image as in a real pass.

    Each image goes through all steps before the next is loaded (as in :func:`one_pass`);
    the CPU time of every step is summed over the images; the best of ``passes`` passes
    is printed per step.
    """
    sys.stdout.write(f"\nCPU ms per image, by step (best of {passes} passes of {len(files)} photos)\n")
    for recipe, kw in RECIPES.items():
        for arm, loader, tf in (
            ("pil", load_rgb, build_transform(size, **kw)),
            ("tensor", read_image_tensor, build_tensor_transform(size, kernels="fast", **kw)),
            ("tensor-v2", read_image_tensor, build_tensor_transform(size, kernels="v2", **kw)),
        ):
            steps: list[tuple[str, Callable]] = [("decode", loader)]
            steps += [(type(s).__name__, s) for s in tf.transforms]
            best = np.full(len(steps), math.inf)
            for _ in range(passes):
                spent = np.zeros(len(steps))
                for path in files:
                    item: Any = path
                    for i, (_, step) in enumerate(steps):
                        start = time.thread_time()
                        item = step(item)
                        spent[i] += time.thread_time() - start
                best = np.minimum(best, spent * 1e3 / len(files))
            parts = ", ".join(f"{name} {ms:.2f}" for (name, _), ms in zip(steps, best, strict=True))
            sys.stdout.write(f"  {recipe:<6}{arm:<10} total {best.sum():5.2f}: {parts}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=SHARED_DATA / "cub100",
                        help="folder holding CUB_200_2011/ (default: the shared real photos)")
    parser.add_argument("--images", type=int, default=300, help="photos, spread over the train split")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--size", type=int, default=224, help="network input side (paper: 336)")
    parser.add_argument("--quick", action="store_true", help="60 photos, 3 trials")
    parser.add_argument("--profile", action="store_true", help="also CPU ms per step")
    parser.add_argument("--json", type=Path, help="save the figures here")
    args = parser.parse_args()
    if args.quick:
        args.images, args.trials = 60, 3
    if args.trials < 2:
        parser.error("--trials needs at least 2 (an interval needs two)")
    torch.set_num_threads(1)

    samples = build_dataset("cub200", args.root, "train").samples
    step = max(1, len(samples) // args.images)
    files = [path for path, _ in samples[::step]][: args.images]
    info = machine_info()
    info.update(torchvision=torchvision.__version__, pillow=PIL.__version__,
                libjpeg_turbo=PIL.features.version("libjpeg_turbo"))
    sys.stdout.write(f"machine: {json.dumps(info)}\n")
    sys.stdout.write(
        f"{len(files)} CUB photos from {args.root} (every {step}th of the train split), "
        f"{args.size} px, {args.trials} trials, one process, 1 torch thread\n\n"
    )
    runs = pipelines(args.size)
    for loader, transform in runs.values():  # warm-up: page cache, allocator, lazy imports
        one_pass(files[:20], loader, transform)
    for path in files:
        path.read_bytes()

    rates: dict[tuple[str, str], dict[str, list[float]]] = {
        key: {"wall": [], "cpu": []} for key in runs
    }
    for trial in range(args.trials):
        for recipe in RECIPES:
            order = ARMS[trial % len(ARMS):] + ARMS[: trial % len(ARMS)]
            for arm in order:
                torch.manual_seed(trial)
                wall, cpu = one_pass(files, *runs[recipe, arm])
                rates[recipe, arm]["wall"].append(len(files) / wall)
                rates[recipe, arm]["cpu"].append(len(files) / cpu)
        sys.stderr.write(f"trial {trial + 1}/{args.trials} done\n")

    header = (f"{'recipe':<7}{'arm':<11}{'img/s wall':>11}{'img/s CPU':>11}"
              f"{'vs pil, wall (95% CI)':>26}{'vs pil, CPU (95% CI)':>26}\n")
    sys.stdout.write(header + "-" * (len(header) - 1) + "\n")
    rows, passed = [], True
    for recipe in RECIPES:
        for arm in ARMS:
            r = rates[recipe, arm]
            row: dict[str, Any] = {
                "recipe": recipe, "arm": arm,
                "wall_images_per_s": float(np.median(r["wall"])),
                "cpu_images_per_s": float(np.median(r["cpu"])),
            }
            cells = []
            for clock in ("wall", "cpu"):
                ratios = [a / b for a, b in zip(r[clock], rates[recipe, "pil"][clock], strict=True)]
                mean, low, high = ratio_summary(ratios)
                row[f"{clock}_ratio"], row[f"{clock}_ratio_ci"] = mean, [low, high]
                cells.append("" if arm == "pil" else f"{mean:.2f} ({low:.2f}-{high:.2f})")
            if arm == "tensor":
                passed &= row["wall_ratio_ci"][0] >= 2.0
            rows.append(row)
            sys.stdout.write(
                f"{recipe:<7}{arm:<11}{row['wall_images_per_s']:>11.0f}{row['cpu_images_per_s']:>11.0f}"
                f"{cells[0]:>26}{cells[1]:>26}\n"
            )
    end_load = [round(v, 2) for v in os.getloadavg()]
    sys.stdout.write(f"\nload average at the end: {end_load}\n")
    sys.stdout.write(
        f"{'PASS' if passed else 'FAIL'}: tensor path at least 2x the PIL path (wall clock, lower "
        f"95% bound) for paper, mild and test\n"
    )
    if args.profile:
        profile_steps(files[:100], args.size)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "end_load": end_load, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
