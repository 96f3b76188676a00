"""Tiny trained models and image folders for the export and gallery tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fusnet.config import RunConfig
from fusnet.train.loop import train


def tiny_run(out: Path, bits: int = 12, seed: int = 0) -> Path:
    """Train a tiny Multi-FusNet (bundled efficientnet_lite0, frozen, 1 epoch); its run folder."""
    config = RunConfig().replace(
        **{
            "data.dataset": "synthetic",
            "data.synthetic_classes": 4,
            "data.image_size": 64,
            "data.batch_size": 16,
            "data.eval_batch_size": 32,
            "model.backbone": "efficientnet_lite0",
            "model.pretrained": "default",
            "model.bits": bits,
            "model.block_mid": 16,
            "model.level_dim": 32,
            "model.hash_hidden": 16,
            "model.transformer_dim": 16,
            "model.transformer_heads": 2,
            "mode": "frozen",
            "optim.epochs": 1,
            "optim.lr": 0.01,
            "seed": seed,
            "device": "cpu",
            "output_dir": str(out),
        }
    )
    train(config)
    return out


def write_images(folder: Path, count: int, seed: int = 0, size: int = 48) -> list[Path]:
    """``count`` random-pattern PNG images (different colours and stripes) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)  # (H, W, 3)
        pixels[:, :: 2 + i % 5] = rng.integers(0, 256, 3)  # stripes: codes differ between images
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths
