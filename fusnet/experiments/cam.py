"""Class activation maps of the two-branch fusion (Fig. 10) with ``pytorch_grad_cam``: per
image and level, Grad-CAM of f_i (``original``, an identity tap), A(f_i) (``attention``)
and f_i + A(f_i) (``fused``), for the score ``<u, P[y]>`` (``target="hash"``: the hash
output against the true class's proxy code) or the true class's logit (the top level only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.experiments.examples import choose_queries, split_dataset
from fusnet.models.multifusnet import MultiFusNet

CAM_KINDS: tuple[str, ...] = ("original", "attention", "fused")  # Fig. 10's column order

CAM_KIND_TITLES: dict[str, str] = {"original": "f", "attention": "A(f)", "fused": "f + A(f)"}
CAM_TARGETS: tuple[str, ...] = ("hash", "class")


class CamModel(nn.Module):
    """MultiFusNet with an identity tap on each backbone level, returning u or the logits."""

    def __init__(self, model: MultiFusNet, output: str = "hash") -> None:
        super().__init__()
        if output not in CAM_TARGETS:
            raise ConfigError(f"CAM output must be one of {CAM_TARGETS}, got {output!r}")
        self.model, self.output = model, output
        self.taps = nn.ModuleList(nn.Identity() for _ in model.backbone.feature_info)

    def forward(self, images: Tensor) -> Tensor:
        levels = [tap(f) for tap, f in zip(self.taps, self.model.backbone(images), strict=True)]
        out = self.model.head(levels)
        return out.hash_logits if self.output == "hash" else out.class_logits  # (B, bits | C)

    @property
    def levels(self) -> list[int]:
        """Backbone levels the head uses (0-based): all three, or the top one."""
        n = len(self.taps)
        return [i % n for i in self.model.head.level_indices]

    def layer(self, kind: str, level: int) -> nn.Module:
        """The module whose output is the ``kind`` map of level ``level`` (0-based)."""
        if kind not in CAM_KINDS:
            raise ConfigError(f"CAM kind must be one of {CAM_KINDS}, got {kind!r}")
        if level not in self.levels:
            raise ConfigError(f"the head uses levels {self.levels}, not {level}")
        if kind == "original":
            return self.taps[level]
        if not self.model.config.fusion:
            raise ConfigError(f"the {kind!r} map needs the fusion branch (ModelConfig.fusion)")
        fusion = self.model.head.fusions[self.levels.index(level)]
        return fusion.attention if kind == "attention" else fusion


class HashCodeTarget:
    """Grad-CAM target: ``<u, code>``, one image's hash output against a (bits,) code."""

    def __init__(self, code: Tensor) -> None:
        self.code = code

    def __call__(self, model_output: Tensor) -> Tensor:
        code = self.code.to(model_output.device, model_output.dtype)
        return (model_output * code).sum(dim=-1)


def compute_cams(model: MultiFusNet, images: Tensor, labels: Sequence[int],
                 proxy_codes: Tensor | None = None, target: str = "hash",
                 kinds: Sequence[str] = CAM_KINDS) -> dict[tuple[str, int], np.ndarray]:
    """Grad-CAM maps ``(kind, level 0-based) -> (B, H, W)`` in [0, 1] of ``images`` (B, 3, H, W)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    wrapper = CamModel(model, output=target).eval()
    if target == "hash":
        if proxy_codes is None:
            raise ConfigError("target='hash' needs the class proxy codes")
        targets = [HashCodeTarget(proxy_codes[int(y)]) for y in labels]
    else:
        targets = [ClassifierOutputTarget(int(y)) for y in labels]
    images = images.to(next(model.parameters()).device)
    maps: dict[tuple[str, int], np.ndarray] = {}
    levels = wrapper.levels if target == "hash" else wrapper.levels[-1:]
    with torch.enable_grad():
        for level in levels:
            for kind in kinds:
                with GradCAM(model=wrapper, target_layers=[wrapper.layer(kind, level)]) as cam:
                    maps[(kind, level)] = cam(input_tensor=images, targets=targets).astype(np.float32)
    return maps


def display_images(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the input normalisation: (B, 3, H, W) -> (B, H, W, 3) float in [0, 1]."""
    m = torch.as_tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    return (images.cpu() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def cam_table(maps: dict[tuple[str, int], np.ndarray], indices: Sequence[int],
              names: Sequence[str]) -> pd.DataFrame:
    """Mean activation of every map of every image: image, class, kind, level (1-based)."""
    return pd.DataFrame([{"image": int(i), "class": name, "kind": kind, "level": level + 1,
                          "mean_activation": float(m[j].mean())}
                         for (kind, level), m in maps.items()
                         for j, (i, name) in enumerate(zip(indices, names, strict=True))])


def cam_summary(maps: dict[tuple[str, int], np.ndarray]) -> dict[str, float]:
    """Mean activation of each map, keyed ``"<kind>/level<i>"`` (1-based as in the paper)."""
    return {f"{kind}/level{level + 1}": float(m.mean()) for (kind, level), m in maps.items()}


def load_cam_batch(config: RunConfig, model: MultiFusNet,
                   count: int) -> tuple[Tensor, list[int], np.ndarray, list[str]]:
    """``count`` test images, classes spread as Fig. 12's queries, with labels, indices, names."""
    from fusnet.data.transforms import build_transform

    dataset = split_dataset(config, "test")
    dataset.transform = build_transform(config.data.test_image_size, train=False,
                                        mean=model.backbone.mean, std=model.backbone.std)
    indices = choose_queries(dataset.labels, min(count, len(dataset)))
    items = [dataset[int(i)] for i in indices]
    images = torch.stack([image for image, _ in items])  # (B, 3, H, W)
    labels = [int(label) for _, label in items]
    return images, labels, indices, [dataset.class_names[y] for y in labels]
