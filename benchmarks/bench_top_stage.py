"""The top-stage training step (``mode="top"``, notebook 11's regime) on this CPU: today's
float32 step against each candidate speed-up, in one run, on the same cached batches.

Every candidate runs the real step: Multi-FusNet's loss on the original and the zoomed
view (two forwards of the backbone's top stages and the head), backward, SGD, with the cpu
profile's head widths at 48 bits on EfficientNet-Lite0's stride-8 maps of 224-px images
(random values of the cached shape: data loading is not measured). For each it prints
images/s, the ratio to today's step, and the step's achieved GFLOP/s (forward and backward
FLOPs counted by ``torch.utils.flop_counter``) beside a dense matmul peak measured on the
same cores in the same run. Candidates: bfloat16 autocast (only where the CPU has native
bf16: ``avx512_bf16`` or ``amx_bf16``; elsewhere it says so and skips), ``torch.compile``
of the trained stages and the head, the cached maps stored in bfloat16 / float16 (half the
memory; cast at batch time), batch size, thread count, one vs two trained stages, and the
channels-last layout (``optim.memory_format``) alone and with one trained stage, and that
with the depthwise convolutions' weights frozen (``freeze_depthwise``). A second
table times the frozen backbone's forward that makes the feature caches, in the default
layout, channels-last, and two candidates beyond (BatchNorm folded into the convolutions,
bf16 autocast), with each one's largest difference from the default's maps.

    python benchmarks/bench_top_stage.py             # every candidate (~12 min on 2 cores)
    python benchmarks/bench_top_stage.py --quick     # fewer steps
    python benchmarks/bench_top_stage.py --only "one trained stage" "channels_last"
    python benchmarks/bench_top_stage.py --json out.json

Steps alternate between the reference and each candidate (``--rounds``), so load drifting
during the run hits both alike; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from machine import machine_info  # benchmarks/ is the script's folder
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.flop_counter import FlopCounterMode

from fusnet.config import RunConfig
from fusnet.experiments.recipes import CPU_OVERRIDES, FINE_TUNE
from fusnet.methods.base import Batch
from fusnet.methods.multifusnet import MultiFusNetMethod
from fusnet.models import MultiFusNet
from fusnet.train.optim import build_optimizer
from fusnet.train.top_stage import TopStageNet, freeze_depthwise

logger = logging.getLogger("bench_top_stage")

NUM_CLASSES = 100  # the CUB subset
CACHED_SHAPES = {2: [(40, 28, 28)], 1: [(40, 28, 28), (112, 14, 14)]}
"""The frozen levels a top-stage step reads (Lite0 at 224 px): stride 8, and stride 16."""


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN uses it for convs and matmuls)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class Candidate:
    """One way of running the step."""

    name: str
    batch: int = 32
    threads: int = 2
    top_stages: int = 2
    autocast_bf16: bool = False
    compile: bool = False
    cache_dtype: torch.dtype = torch.float16  # as the feature cache stores the maps
    channels_last: bool = False  # the step in NHWC (the caches' layout option, data.cache_layout)
    freeze_depthwise: bool = False  # the top stages' depthwise weights not trained
    result: dict = field(default_factory=dict)


def run_config(c: Candidate) -> RunConfig:
    """The cpu profile's top-stage run (notebook 11's regime), without weights or data."""
    changes = {**CPU_OVERRIDES, **FINE_TUNE, "mode": "top", "top_stages": c.top_stages,
               "optim.lr": 0.2, "data.batch_size": c.batch, "data.image_size": 224,
               "model.backbone": "efficientnet_lite0", "model.pretrained": "none",
               "model.bits": 48, "device": "cpu"}
    return RunConfig().replace(**changes)


class Step:
    """A built model, method and optimiser for one candidate, and its cached batches."""

    def __init__(self, c: Candidate) -> None:
        torch.manual_seed(0)
        config = run_config(c)
        model = MultiFusNet(config.model, NUM_CLASSES)
        labels = torch.arange(c.batch * 4) % NUM_CLASSES  # (N_fit,)
        self.method = MultiFusNetMethod(config, labels, NUM_CLASSES)
        self.method.bind(model)
        model.backbone.requires_grad_(False).eval()
        trainable = TopStageNet(model, c.top_stages)
        trainable.stages.requires_grad_(True)
        if c.freeze_depthwise:
            freeze_depthwise(trainable.stages)
        self.optimizer = build_optimizer(model, self.method, config, trainable)
        layout = torch.channels_last if c.channels_last else torch.contiguous_format
        trainable.to(memory_format=layout)  # as the trainer lays out the model
        self.net = torch.compile(trainable) if c.compile else trainable
        generator = torch.Generator().manual_seed(1)
        self.cached = [[torch.rand((c.batch, *shape), generator=generator).to(
                            c.cache_dtype, memory_format=layout)
                        for shape in CACHED_SHAPES[c.top_stages]]
                       for _ in range(2)]  # original and zoomed view, as the cache stores them
        self.labels = labels[: c.batch]
        self.candidate = c

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.candidate.autocast_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self) -> None:
        original, zoomed = ([t.float() for t in view] for view in self.cached)  # (B, C, H, W)
        batch = Batch(inputs=original, zoom_inputs=zoomed, labels=self.labels,
                      positions=torch.arange(len(self.labels)))
        loss, _ = self.method.batch_loss(self.net, batch, self.autocast)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def step_flops(step: Step) -> int:
    """FLOPs of one step: 3x the forward's (convolutions and matmuls of both views).

    Every module the step runs trains, so backward costs twice its forward (the input's and
    the weights' gradients). The forward is counted; the backward is not, because
    ``FlopCounterMode``'s formula for ``convolution_backward`` ignores ``groups``: on a
    depthwise 5x5 convolution (96 channels, 28x28, batch 8) it counts 2.92 GFLOP where the
    forward is 0.03.
    """
    original, zoomed = ([t.float() for t in view] for view in step.cached)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        step.net(original)
        step.net(zoomed)
    return 3 * counter.get_total_flops()


def matmul_peak(threads: int, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Dense matmul GFLOP/s on ``threads`` threads: the limit a step could reach."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def folded_batchnorm(backbone: nn.Module) -> nn.Module:
    """A copy of a frozen timm backbone with every BatchNorm folded into the convolution
    before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``; timm's ``BatchNormAct2d`` keeps
    its activation): a candidate for the caching forward, not used by training."""
    folded = copy.deepcopy(backbone).eval()
    for module in folded.modules():
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(children):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                after = [getattr(bn, name) for name in ("drop", "act") if hasattr(bn, name)]
                setattr(module, bn_name, nn.Sequential(*after))  # empty: the identity
    return folded


def caching_speed(threads: int, rounds: int, bf16: bool, batch: int = 64) -> list[dict]:
    """img/s of the frozen backbone's forward that makes the feature caches (Lite0, 224 px),
    interleaved: the default layout, channels-last (``data.cache_layout``), and two
    candidates beyond it, channels-last with BatchNorm folded and with bf16 autocast (where
    the CPU has it); each with its maps' largest difference from the default's."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = run_config(Candidate("caching"))
    backbone = MultiFusNet(config.model, NUM_CLASSES).backbone.eval()
    nhwc = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
    folded = folded_batchnorm(backbone).to(memory_format=torch.channels_last)
    images = torch.randn(batch, 3, 224, 224)  # (B, 3, H, W)
    last = images.contiguous(memory_format=torch.channels_last)

    def bf16_forward() -> list[torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return [m.float() for m in nhwc(last)]

    forwards: dict[str, Callable[[], list[torch.Tensor]]] = {
        "contiguous": lambda: backbone(images),
        "channels_last": lambda: nhwc(last),
        "channels_last + folded BN": lambda: folded(last),
    }
    if bf16:
        forwards["channels_last + bf16 autocast"] = bf16_forward
    seconds: dict[str, list[float]] = {name: [] for name in forwards}
    with torch.no_grad():
        maps = {name: forward() for name, forward in forwards.items()}  # and a warm-up
        for _ in range(rounds):
            for name, forward in forwards.items():
                seconds[name].append(timed(forward))
    medians = {name: sorted(t)[len(t) // 2] for name, t in seconds.items()}
    return [{"caching forward": name, "img_per_s": batch / medians[name],
             "speedup": medians["contiguous"] / medians[name],
             "max_abs_difference": max(float((a - b).abs().max()) for a, b in
                                       zip(maps["contiguous"], maps[name], strict=True))}
            for name in forwards]


def candidates(bf16: bool) -> list[Candidate]:
    found = [
        Candidate("float32 (today)"),
        Candidate("torch.compile", compile=True),
        Candidate("cache in bfloat16", cache_dtype=torch.bfloat16),
        Candidate("cache in float32", cache_dtype=torch.float32),
        Candidate("batch 64", batch=64),
        Candidate("batch 16", batch=16),
        Candidate("one thread", threads=1),
        Candidate("one trained stage", top_stages=1),
        Candidate("channels_last", channels_last=True),
        Candidate("one stage + channels_last", top_stages=1, channels_last=True),
        Candidate("one stage + channels_last + frozen depthwise", top_stages=1,
                  channels_last=True, freeze_depthwise=True),
    ]
    if bf16:
        found[1:1] = [Candidate("bf16 autocast", autocast_bf16=True),
                      Candidate("bf16 autocast + compile", autocast_bf16=True, compile=True)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="timed steps per candidate")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--threads", type=int, default=2, help="threads of today's step")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only these candidates (names as printed), beside today's")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rounds = 3 if args.quick else args.rounds
    bf16 = native_bf16()
    if not bf16:
        logger.info("this CPU has no native bfloat16 (avx512_bf16 / amx_bf16): bf16 autocast "
                    "skipped, every candidate runs in float32")
    found = candidates(bf16)
    if args.only:
        unknown = set(args.only) - {c.name for c in found}
        if unknown:
            parser.error(f"unknown candidates {sorted(unknown)}; known: {[c.name for c in found]}")
        found = [found[0]] + [c for c in found[1:] if c.name in args.only]
    for c in found:
        c.threads = c.threads if c.name == "one thread" else args.threads
    steps = []
    for c in found:
        torch.set_num_threads(c.threads)
        start = time.perf_counter()
        step = Step(c)
        step()  # warm-up (and compilation)
        step()
        c.result["setup_seconds"] = round(time.perf_counter() - start, 1)
        c.result["gflop_per_step"] = step_flops(step) / 1e9
        steps.append(step)
    reference = steps[0]
    times: dict[str, list[float]] = {c.name: [] for c in found}
    for _ in range(rounds):  # interleaved: the reference between every candidate
        for c, step in zip(found, steps, strict=True):
            torch.set_num_threads(c.threads)
            times[c.name].append(timed(step))
            if step is not reference:
                torch.set_num_threads(found[0].threads)
                times[found[0].name].append(timed(reference))
    peaks = {"float32": matmul_peak(args.threads, torch.float32)}
    if bf16:
        peaks["bfloat16"] = matmul_peak(args.threads, torch.bfloat16)
    base = sorted(times[found[0].name])[len(times[found[0].name]) // 2]
    rows = []
    for c in found:
        median = sorted(times[c.name])[len(times[c.name]) // 2]
        peak = peaks["bfloat16" if c.autocast_bf16 else "float32"]
        if c.threads != args.threads:
            peak = peak * c.threads / args.threads  # the peak scaled to its threads
        gflops = c.result["gflop_per_step"] / median
        rows.append({"candidate": c.name, "batch": c.batch, "threads": c.threads,
                     "img_per_s": c.batch / median,
                     "speedup": (c.batch / median) / (found[0].batch / base),
                     "gflop_per_s": gflops, "share_of_peak": gflops / peak,
                     "setup_seconds": c.result["setup_seconds"]})
    header = f"{'candidate':26} {'batch':>5} {'thr':>3} {'img/s':>7} {'x today':>8} " \
             f"{'GFLOP/s':>8} {'% peak':>7} {'setup s':>8}"
    lines = [header] + [
        f"{r['candidate']:26} {r['batch']:>5} {r['threads']:>3} {r['img_per_s']:>7.1f} "
        f"{r['speedup']:>8.2f} {r['gflop_per_s']:>8.1f} {100 * r['share_of_peak']:>6.1f}% "
        f"{r['setup_seconds']:>8.1f}" for r in rows]
    caching = caching_speed(args.threads, rounds, bf16)
    lines += ["", f"{'caching forward':30} {'img/s':>7} {'x today':>8} {'max |diff|':>10}"] + [
        f"{r['caching forward']:30} {r['img_per_s']:>7.1f} {r['speedup']:>8.2f} "
        f"{r['max_abs_difference']:>10.1e}" for r in caching]
    info = {**machine_info(), "load_average": os.getloadavg(), "native_bf16": bf16,
            "python": platform.python_version(), "torch": torch.__version__,
            "matmul_peak_gflop_per_s": peaks, "rounds": rounds}
    print("\n".join(lines))
    print(json.dumps(info, indent=1))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info, "rows": rows, "caching": caching}, out, indent=1)


if __name__ == "__main__":
    main()
