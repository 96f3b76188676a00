"""GPU check: Multi-FusNet training throughput, memory, largest batch, short-budget mAP.

Run by ``benchmarks/gpu_check.sh`` on a lent GPU machine (no network): the CUB
subset and the bundled efficientnet_lite0 weights travel with the command.
Prints a table and writes ``gpu_check.json`` into ``--out``. Nothing in the
project depends on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
from training_step import time_training_steps  # benchmarks/ is the script's folder

from fusnet import runtime
from fusnet.config import ModelConfig, RunConfig
from fusnet.models import MultiFusNet
from fusnet.train.loop import train

logger = logging.getLogger("gpu_check")


def train_steps(model: MultiFusNet, batch: int, size: int, steps: int, zoom: bool) -> dict:
    """AMP training steps on random inputs: images/s and peak GPU memory."""
    result = time_training_steps(model, batch, size, steps, warmup=3, zoom=zoom, amp=True)
    return {
        "images_per_second": round(result["images_per_second"], 1),
        "peak_memory_gib": round(result["peak_memory_gib"], 2),
        "zoom_share": round(result["zoom_share"], 3),
    }


def largest_batch(model_config: ModelConfig, size: int, candidates: list[int]) -> int:
    """Largest candidate batch for which one AMP training step (with zoom) fits."""
    fits = 0
    for batch in candidates:
        model = MultiFusNet(model_config, num_classes=100).to("cuda")
        try:
            train_steps(model, batch, size, steps=1, zoom=True)
            fits = batch
        except torch.OutOfMemoryError:
            break
        finally:
            del model
            torch.cuda.empty_cache()
    return fits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cub-root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=336)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    report: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "code": runtime.code_version(),
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "throughput": {},
    }
    setups = {
        "resnet50 (random init)": ModelConfig(backbone="resnet50", pretrained="none", bits=48),
        "efficientnet_lite0 (pretrained)": ModelConfig(
            backbone="efficientnet_lite0", pretrained="default", bits=48
        ),
    }
    for name, model_config in setups.items():
        for zoom in (True, False):
            model = MultiFusNet(model_config, num_classes=100).to("cuda")
            result = train_steps(model, args.batch, args.size, args.steps, zoom)
            report["throughput"][f"{name}, zoom {'on' if zoom else 'off'}"] = result
            logger.info("%s zoom=%s: %s", name, zoom, result)
            del model
            torch.cuda.empty_cache()
        report.setdefault("largest_batch", {})[name] = largest_batch(
            model_config, args.size, [64, 128, 256, 384, 512]
        )
        logger.info("%s largest batch: %s", name, report["largest_batch"][name])

    # Short fixed budget on real photos: efficientnet_lite0 pretrained, full training.
    config = RunConfig().replace(
        **{
            "data.dataset": "cub200",
            "data.root": args.cub_root,
            "data.image_size": args.size,
            "data.batch_size": args.batch,
            "data.eval_batch_size": 128,
            "data.num_workers": args.workers,
            "model.backbone": "efficientnet_lite0",
            "model.pretrained": "default",
            "model.bits": 48,
            "optim.epochs": args.epochs,
            "optim.lr": 0.0035,
            "select": "last",
            "device": "cuda",
            "output_dir": str(out / "cub-run"),
        }
    )
    start = time.perf_counter()
    result = train(config)
    report["short_budget"] = {
        "dataset": "cub200 layout, subset carried to the GPU machine",
        "train_images": result.metrics.get("test", {}).get("num_database"),
        "epochs": args.epochs,
        "bits": 48,
        "selection": "last epoch",
        "map_index_ties": result.metrics["map_index_ties"],
        "map_tie_aware": result.metrics["map_tie_aware"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "history": result.metrics["history"],
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    sys.stdout.write(json.dumps({k: v for k, v in report.items() if k != "code"}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
