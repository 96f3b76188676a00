"""Training-step throughput and peak memory of the full model on the CPU.

For resnet50 and efficientnet_lite0 at 224 and 336 pixels, batch 8, the zoom
view on and off: images/s of real training steps (random inputs, no data
loading), peak resident memory, and the share of the step spent in the zoom
warp. Reference: the same step with the zoom done by a per-image Python loop,
as the authors' code does. Each measurement runs in its own process so that
peak memory (ru_maxrss) belongs to that configuration alone.

    python benchmarks/bench_train.py            # the whole grid (about 15-25 min on 2 cores)
    python benchmarks/bench_train.py --quick    # efficientnet_lite0 at 224 only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

import torch
from training_step import time_training_steps  # benchmarks/ is the script's folder

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
    args = parser.parse_args()
    if args.one:
        backbone, size, zoom = args.one
        sys.stdout.write(json.dumps(measure_one(backbone, int(size), zoom, args.batch, args.steps)) + "\n")
        return 0

    backbones = ["efficientnet_lite0"] if args.quick else ["efficientnet_lite0", "resnet50"]
    sizes = [224] if args.quick else [224, 336]
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
