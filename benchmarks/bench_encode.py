"""Encoding throughput (images/s, JPEG decoding and transforms included).

Encodes the CUB subset's database (its training split, test transform) with the
full Multi-FusNet on efficientnet_lite0 for several DataLoader worker counts and
prints images/s against the single-process loader (workers = 0, the reference),
so the best worker count for this machine can be read off.

    python benchmarks/bench_encode.py --root ../shared/data/cub100 [--images 600]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch
from torch.utils.data import Subset

from fusnet.config import ModelConfig
from fusnet.data import build_dataset
from fusnet.data.transforms import build_transform
from fusnet.eval.encoding import encode_dataset
from fusnet.models import MultiFusNet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/cub100")
    parser.add_argument("--images", type=int, default=600, help="first N database images")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()

    torch.manual_seed(0)
    model = MultiFusNet(ModelConfig(backbone="efficientnet_lite0", pretrained="default", bits=48), 100)
    transform = build_transform(args.size, train=False, mean=model.backbone.mean, std=model.backbone.std)
    database = build_dataset("cub200", args.root, "train", transform=transform)
    subset = Subset(database, range(min(args.images, len(database))))
    sys.stdout.write(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); {len(subset)} CUB images, "
        f"{args.size} px, batch {args.batch}, efficientnet_lite0 + Multi-FusNet head (paper widths)\n\n"
        f"{'workers':>8}{'img/s':>10}{'vs workers=0':>14}\n"
    )
    reference = None
    codes_reference = None
    for workers in args.workers:
        codes, _, speed = encode_dataset(model, subset, torch.device("cpu"), args.batch, workers)
        if codes_reference is None:
            codes_reference, reference = codes, speed
        assert torch.equal(codes, codes_reference), "codes changed with the worker count"
        sys.stdout.write(f"{workers:>8}{speed:>10.1f}{speed / reference:>14.2f}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
