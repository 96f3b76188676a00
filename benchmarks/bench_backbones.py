"""CPU cost of the EfficientNet-Lite backbones: images/s of a forward pass, Lite1/Lite2 vs Lite0.

Times ``backbone(x)`` (the three feature maps, no classifier head) under
``torch.no_grad()`` in eval mode, batch 32, for ``efficientnet_lite0``, ``efficientnet_lite1``
and ``efficientnet_lite2`` with their packaged ImageNet weights, at 224 px (all three) and
at each model's native resolution (Lite1 240, Lite2 260). With ``--backward`` it also times a
training step of the backbone alone (train mode, forward + backward of the summed map means),
the cost that end-to-end or top-stage fine-tuning pays per image.

The configurations are timed in interleaved rounds (one batch each per round, after one
warm-up batch each) so that a change in the machine's load hits them all alike. Each batch is
timed twice: wall clock, and the CPU time of this thread (user + system, from
``getrusage(RUSAGE_THREAD)``; with one torch thread all the work runs on it). On a core shared with other jobs the wall
clock also counts the time they ran, so the CPU-time rate (images per CPU-second) is the
measure of cost and the one the ratios to Lite0 at 224 px use; the table gives medians over
rounds, the spread ((max - min) / median) of the CPU times and the share of system time in
them (page faults of the large activation buffers, mostly).

    taskset -c 1 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        python benchmarks/bench_backbones.py [--rounds 5] [--threads 1] [--backward]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch
from machine import machine_info  # benchmarks/ is the script's folder

from fusnet.models.backbones import Backbone, build_backbone
from fusnet.models.pretrained import EFFICIENTNET_LITE_VARIANTS

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def configurations() -> list[tuple[str, int]]:
    """(backbone, resolution) pairs: every model at 224 px, then at its native size."""
    pairs = [(name, 224) for name in LITES]
    pairs += [
        (name, EFFICIENTNET_LITE_VARIANTS[name].input_size)
        for name in LITES
        if EFFICIENTNET_LITE_VARIANTS[name].input_size != 224
    ]
    return sorted(pairs, key=lambda pair: (LITES.index(pair[0]), pair[1]))


def _thread_cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of the calling thread so far."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime


def time_batch(backbone: Backbone, x: torch.Tensor, backward: bool) -> tuple[float, float, float]:
    """(wall, CPU, system) seconds of one forward pass (no grad) or one forward + backward."""
    start, (user0, sys0) = time.perf_counter(), _thread_cpu()
    if backward:
        backbone.zero_grad(set_to_none=True)
        feats = backbone(x)  # [(B, C1, H/8, W/8), (B, C2, H/16, W/16), (B, C3, H/32, W/32)]
        sum(f.mean() for f in feats).backward()
    else:
        with torch.no_grad():
            backbone(x)
    wall = time.perf_counter() - start
    user1, sys1 = _thread_cpu()
    return wall, (user1 - user0) + (sys1 - sys0), sys1 - sys0


def run(rounds: int, batch: int, backward: bool) -> list[dict[str, object]]:
    """Time every configuration ``rounds`` times, interleaved; one row per configuration."""
    torch.manual_seed(0)
    models = {name: build_backbone(name, pretrained=True) for name in LITES}
    for model in models.values():
        model.train(backward)
    pairs = configurations()
    inputs = {size: torch.randn(batch, 3, size, size) for _, size in pairs}  # (B, 3, S, S)
    for name, size in pairs:  # warm-up: allocator, oneDNN primitives
        time_batch(models[name], inputs[size], backward)
    times: dict[tuple[str, int], list[tuple[float, float, float]]] = {pair: [] for pair in pairs}
    for _ in range(rounds):
        for name, size in pairs:
            times[(name, size)].append(time_batch(models[name], inputs[size], backward))
    rows = []
    for name, size in pairs:
        wall = [w for w, _, _ in times[(name, size)]]
        cpu = [c for _, c, _ in times[(name, size)]]
        system = sum(t for _, _, t in times[(name, size)])
        median_cpu = statistics.median(cpu)
        rows.append(
            {
                "backbone": name,
                "size": size,
                "params_M": sum(p.numel() for p in models[name].parameters()) / 1e6,
                "img_s_wall": batch / statistics.median(wall),
                "img_per_cpu_s": batch / median_cpu,
                "spread": (max(cpu) - min(cpu)) / median_cpu,
                "sys_share": system / sum(cpu),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed batches per configuration")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument(
        "--backward", action="store_true", help="also time forward + backward (train mode)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = sys.stdout
    out.write(f"machine: {machine_info()}\n")
    out.write(
        f"batch {args.batch}, {args.rounds} interleaved rounds (median), backbone only "
        "(three feature maps), packaged ImageNet weights, float32, contiguous NCHW\n"
    )
    modes = [False, True] if args.backward else [False]
    for backward in modes:
        what = "forward + backward, train mode" if backward else "forward, no grad, eval mode"
        rows = run(args.rounds, args.batch, backward)
        reference = rows[0]["img_per_cpu_s"]
        out.write(
            f"\n{what}\n{'backbone':<20}{'px':>5}{'params M':>10}{'img/CPU-s':>11}"
            f"{'vs lite0@224':>14}{'spread':>8}{'sys':>6}{'img/s wall':>12}\n"
        )
        for row in rows:
            out.write(
                f"{row['backbone']:<20}{row['size']:>5}{row['params_M']:>10.2f}"
                f"{row['img_per_cpu_s']:>11.1f}{row['img_per_cpu_s'] / reference:>14.2f}"
                f"{row['spread']:>8.0%}{row['sys_share']:>6.0%}{row['img_s_wall']:>12.1f}\n"
            )
        out.flush()
    out.write(f"\nload average after: {machine_info()['load_average']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
