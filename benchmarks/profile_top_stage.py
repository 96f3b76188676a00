"""Where the one-stage top-stage step spends its time, and what its depthwise convolutions cost.

Two tables, one run, two threads (run it alone on the machine):

1. ``torch.profiler`` over ``--steps`` steps of ``bench_top_stage.py``'s step with one
   trained stage, channels-last (issue 27's regime at 224 px): the operators with the most
   self CPU time, grouped by input shape.
2. The trained stage's 5x5 depthwise convolutions timed alone, forward and backward, in
   both layouts, and the weight gradient computed another way: a grouped convolution with
   the batch folded into the channels (its largest difference from autograd's).

    python benchmarks/profile_top_stage.py [--steps 8] [--rows 25]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_top_stage import Candidate, Step  # benchmarks/ is the script's folder
from machine import machine_info
from torch.profiler import ProfilerActivity, profile

DEPTHWISE = (((32, 1152, 7, 7), 5, 1), ((32, 672, 14, 14), 5, 2))
"""(input shape, kernel, stride) of Lite0's stride-32 stage's depthwise convolutions at
224 px, batch 32: the repeated 5x5 one and the stage's first, stride-2 one."""


def milliseconds(fn: Callable[[], object], reps: int = 20) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e3


def folded_weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: int) -> torch.Tensor:
    """A stride-1 'same' depthwise convolution's weight gradient as one grouped convolution:
    (B, C, H, W) input and output gradient -> (C, 1, k, k)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (kernel // 2,) * 4).transpose(0, 1)  # (C, B, H+k-1, W+k-1)
    padded = padded.reshape(1, c * b, h + kernel - 1, w + kernel - 1)
    filters = grad.transpose(0, 1).reshape(c * b, 1, h, w)  # (C*B, 1, H, W)
    out = F.conv2d(padded, filters, groups=c * b)  # (1, C*B, k, k)
    return out.view(c, b, kernel, kernel).sum(1).unsqueeze(1)


def depthwise_rows() -> list[str]:
    rows = []
    for shape, kernel, stride in DEPTHWISE:
        channels = shape[1]
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(shape).to(memory_format=layout).requires_grad_(True)
            weight = torch.randn(channels, 1, kernel, kernel).to(memory_format=layout)
            weight.requires_grad_(True)

            def conv(x=x, weight=weight, stride=stride, kernel=kernel, channels=channels):
                return F.conv2d(x, weight, stride=stride, padding=kernel // 2, groups=channels)

            grad = torch.randn_like(conv())
            forward = milliseconds(conv)
            both = milliseconds(lambda conv=conv, x=x, w=weight, g=grad:
                                torch.autograd.grad(conv(), (x, w), g))
            weight_only = milliseconds(lambda conv=conv, w=weight, g=grad:
                                       torch.autograd.grad(conv(), (w,), g))
            rows.append(f"| {tuple(shape)} k{kernel} s{stride} | {str(layout).split('.')[-1]} | "
                        f"{forward:.2f} | {both:.2f} | {weight_only:.2f} |")
        if stride == 1:
            x, grad = torch.randn(shape), torch.randn(shape)
            reference = torch.nn.grad.conv2d_weight(x, (channels, 1, kernel, kernel), grad,
                                                    padding=kernel // 2, groups=channels)
            error = (folded_weight_grad(x, grad, kernel) - reference).abs().max().item()
            folded = milliseconds(lambda x=x, g=grad, k=kernel: folded_weight_grad(x, g, k))
            rows.append(f"| {tuple(shape)} k{kernel} s{stride} | weight gradient folded "
                        f"(error {error:.1e}) | | | {folded:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="profiled steps")
    parser.add_argument("--rows", type=int, default=25, help="operators shown")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(machine_info())
    step = Step(Candidate("one stage + channels_last", top_stages=1, channels_last=True))
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=30,
        max_shapes_column_width=80))
    print("| depthwise conv | layout | forward ms | forward + backward ms | "
          "forward + weight grad ms |\n|---|---|---|---|---|")
    print("\n".join(depthwise_rows()))


if __name__ == "__main__":
    main()
