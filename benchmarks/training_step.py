"""One Multi-FusNet training step, timed: shared by bench_train.py and gpu_check.py.

The step is the real one (two-view forward with the zoom, hash + smoothed CE
multi-task loss, SGD), on random tensors so that data loading is not measured.
``zoom_impl="per_image"`` swaps the batched zoom for the per-image Python loop
that the authors' code uses, as the reference.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from fusnet.models import MultiFusNet
from fusnet.models.losses import MultiTaskLoss, classification_loss, hash_loss
from fusnet.models.proxy_codes import class_proxy_codes
from fusnet.models.zoom import SaliencyZoom, saliency_from_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package
from tests.zoom_reference import zoom_per_image_reference  # the authors' per-image loop


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _training_step(
    model: MultiFusNet, batch: int, size: int, zoom: bool, amp: bool
) -> Callable[[str], float]:
    """A function running one training step with the given zoom implementation.

    It returns the seconds spent in the zoom warp during that step.
    """
    device = next(model.parameters()).device
    proxy = class_proxy_codes(model.num_classes, model.config.bits).to(device)  # (C, bits)
    criterion = MultiTaskLoss(alpha_min=0.01).to(device)
    optimizer = torch.optim.SGD(
        list(model.parameters()) + list(criterion.parameters()), lr=0.0035, momentum=0.91
    )
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    zoomer = SaliencyZoom() if zoom else None
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)  # (B, 3, H, W)
    labels = torch.randint(0, model.num_classes, (batch,), generator=generator).to(device)
    model.train()

    def step(zoom_impl: str) -> float:
        if zoom_impl not in ("batched", "per_image"):
            raise ValueError(f"zoom_impl must be 'batched' or 'per_image', got {zoom_impl!r}")
        warp = 0.0
        context = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
        with context:
            out = model(images)
            zoom_logits = None
            if zoomer is not None:
                _sync(device)
                start = time.perf_counter()
                saliency = saliency_from_features(out.levels[-1])  # (B, h, w)
                if zoom_impl == "per_image":
                    modes, coins = zoomer.draw_random(batch, device)
                    zoomed = zoom_per_image_reference(zoomer, images, saliency, modes, coins)
                else:
                    zoomed = zoomer(images, saliency)  # (B, 3, H, W)
                _sync(device)
                warp = time.perf_counter() - start
                zoom_logits = model(zoomed).class_logits.float()
            loss, _ = criterion(
                hash_loss(out.hash_logits.float(), proxy, labels),
                classification_loss(out.class_logits.float(), zoom_logits, labels),
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return warp

    return step


def time_training_steps(
    model: MultiFusNet,
    batch: int,
    size: int,
    steps: int,
    warmup: int = 1,
    zoom: bool = True,
    zoom_impl: str = "batched",
    amp: bool = False,
) -> dict[str, float]:
    """Images/s of full training steps, and the share of step time spent in the zoom warp.

    The zoom warp is the saliency map, the sampling grid and the resampling, not the
    second pass through the network.
    """
    device = next(model.parameters()).device
    step = _training_step(model, batch, size, zoom, amp)
    zoom_seconds = 0.0
    for _ in range(warmup):
        step(zoom_impl)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        zoom_seconds += step(zoom_impl)
    _sync(device)
    seconds = time.perf_counter() - start
    result = {
        "images_per_second": batch * steps / seconds,
        "step_seconds": seconds / steps,
        "zoom_share": zoom_seconds / seconds,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def paired_zoom_steps(
    model: MultiFusNet, batch: int, size: int, pairs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Step seconds of the batched zoom and the per-image reference, interleaved.

    Each pair runs one step of each (alternating which goes first), so a change in
    machine load between the two arms affects both alike: the per-pair ratios measure
    the implementations, not the moment they ran.

    Returns:
        ``{"batched": [...], "per_image": [...]}``: seconds per step, one per pair.
    """
    step = _training_step(model, batch, size, zoom=True, amp=False)
    device = next(model.parameters()).device
    for _ in range(warmup):
        step("batched")
        step("per_image")
    seconds: dict[str, list[float]] = {"batched": [], "per_image": []}
    for i in range(pairs):
        order = ("batched", "per_image") if i % 2 == 0 else ("per_image", "batched")
        for impl in order:
            _sync(device)
            start = time.perf_counter()
            step(impl)
            _sync(device)
            seconds[impl].append(time.perf_counter() - start)
    return seconds
