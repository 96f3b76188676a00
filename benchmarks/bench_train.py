"""Training-step throughput and peak memory of the full model on the CPU.

For resnet50 and efficientnet_lite0 at 224 and 336 pixels, batch 8, the zoom
view on and off: images/s of real training steps (random inputs, no data
loading), peak resident memory, and the share of the step spent in the zoom
warp. Reference: the same step with the zoom done by a per-image Python loop,
as the authors' code does. Each measurement runs in its own process so that
peak memory (ru_maxrss) belongs to that configuration alone.

    python benchmarks/bench_train.py            # the whole grid (about 15-25 min on 2 cores)
    python benchmarks/bench_train.py --quick    # efficientnet_lite0 at 224 only
    python benchmarks/bench_train.py --paired 12   # batched vs per-image zoom, interleaved

``--paired N`` answers "is the batched zoom slower than the per-image reference?" with N
interleaved pairs of steps in one process (one step of each per pair), so that load
drifting during the run hits both arms alike; it prints the median step time of each,
the geometric mean of the per-pair speed ratios (reference time / our time) and its 95%
t-interval.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

import numpy as np
import torch
from scipy import stats
from training_step import (  # benchmarks/ is the script's folder
    paired_zoom_steps,
    time_training_steps,
)

from fusnet.config import ModelConfig
from fusnet.models import MultiFusNet


def measure_one(backbone: str, size: int, zoom: str, batch: int, steps: int) -> dict:
    """One configuration in this process; zoom is "off", "batched" or "per_image"."""
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, pretrained="none", bits=48)
    model = MultiFusNet(config, num_classes=200)
    result = time_training_steps(
        model, batch, size, steps, warmup=1, zoom=zoom != "off",
        zoom_impl="per_image" if zoom == "per_image" else "batched",
    )
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def measure_paired(backbone: str, size: int, batch: int, pairs: int) -> dict:
    """Interleaved batched / per-image steps in this process (module docstring)."""
    torch.manual_seed(0)
    model = MultiFusNet(ModelConfig(backbone=backbone, pretrained="none", bits=48), num_classes=200)
    seconds = paired_zoom_steps(model, batch, size, pairs)
    ours, ref = np.array(seconds["batched"]), np.array(seconds["per_image"])
    log_ratio = np.log(ref / ours)  # > 0: ours faster, per pair
    half = stats.t.ppf(0.975, pairs - 1) * log_ratio.std(ddof=1) / np.sqrt(pairs)
    return {
        "backbone": backbone, "size": size, "pairs": pairs,
        "ours_median_s": float(np.median(ours)), "ref_median_s": float(np.median(ref)),
        "speed_ratio": float(np.exp(log_ratio.mean())),  # geometric mean of per-pair ratios
        "ratio_ci": [float(np.exp(log_ratio.mean() - half)), float(np.exp(log_ratio.mean() + half))],
    }


def paired_table(backbones: list[str], sizes: list[int], batch: int, pairs: int) -> None:
    sys.stdout.write(
        f"{'backbone':<19}{'px':>4}{'pairs':>6}{'ours s/step':>12}{'ref s/step':>11}"
        f"{'speed vs ref':>14}{'95% CI':>16}\n"
    )
    for backbone in backbones:
        for size in sizes:
            command = [sys.executable, __file__, "--one-paired", backbone, str(size),
                       "--batch", str(batch), "--paired", str(pairs)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"{backbone} at {size} px failed (its stderr is above)")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            low, high = row["ratio_ci"]
            sys.stdout.write(
                f"{backbone:<19}{size:>4}{pairs:>6}{row['ours_median_s']:>12.3f}"
                f"{row['ref_median_s']:>11.3f}{row['speed_ratio']:>14.3f}"
                f"{f'{low:.3f}-{high:.3f}':>16}\n"
            )
            sys.stdout.flush()


def run_in_subprocess(backbone: str, size: int, zoom: str, batch: int, steps: int) -> dict:
    command = [sys.executable, __file__, "--one", backbone, str(size), zoom,
               "--batch", str(batch), "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", nargs=3, metavar=("BACKBONE", "SIZE", "ZOOM"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="efficientnet_lite0 at 224 only")
    parser.add_argument("--paired", type=int, metavar="N",
                        help="N interleaved batched/per-image step pairs per configuration")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default 224 336)")
    parser.add_argument("--one-paired", nargs=2, metavar=("BACKBONE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.paired is not None and args.paired < 2:
        parser.error("--paired needs at least 2 pairs (a spread needs two)")
    if args.one_paired:
        backbone, size = args.one_paired
        sys.stdout.write(json.dumps(measure_paired(backbone, int(size), args.batch, args.paired)) + "\n")
        return 0
    if args.one:
        backbone, size, zoom = args.one
        sys.stdout.write(json.dumps(measure_one(backbone, int(size), zoom, args.batch, args.steps)) + "\n")
        return 0

    backbones = ["efficientnet_lite0"] if args.quick else ["efficientnet_lite0", "resnet50"]
    sizes = args.sizes or ([224] if args.quick else [224, 336])
    if args.paired:
        sys.stdout.write(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}; batch {args.batch}, paper widths, zoom on; "
            f"{args.paired} interleaved pairs after 1 warm-up pair\n\n"
        )
        paired_table(backbones, sizes, args.batch, args.paired)
        return 0
    sys.stdout.write(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); batch {args.batch}, "
        f"{args.steps} timed steps after 1 warm-up, paper widths (512/1024), 48 bits, 200 classes\n\n"
    )
    header = (f"{'backbone':<19}{'px':>4} {'zoom':<16}{'img/s':>8}{'vs ref':>8}"
              f"{'zoom warp % of step':>21}{'peak RSS GiB':>14}\n")
    sys.stdout.write(header + "-" * (len(header) - 1) + "\n")
    for backbone in backbones:
        for size in sizes:
            rows = {z: run_in_subprocess(backbone, size, z, args.batch, args.steps)
                    for z in ("per_image", "batched", "off")}
            reference = rows["per_image"]["images_per_second"]
            for zoom, row in rows.items():
                ratio = row["images_per_second"] / reference if zoom != "off" else float("nan")
                label = {"per_image": "per-image (ref)", "batched": "batched", "off": "off"}[zoom]
                sys.stdout.write(
                    f"{backbone:<19}{size:>4} {label:<16}{row['images_per_second']:>8.2f}"
                    f"{ratio:>8.2f}{100 * row['zoom_share']:>20.1f}%{row['peak_rss_gib']:>14.2f}\n"
                )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
