"""Class activation maps of the two-branch fusion (Fig. 10) with ``pytorch_grad_cam``.

Fig. 10 shows, per image and level, Grad-CAM maps of three feature maps:

=============  ==============================================  ============================
kind           feature map                                     hooked module
=============  ==============================================  ============================
``original``   the backbone's level map f_i                    an identity tap on f_i
``attention``  the ECA-enhanced map A(f_i)                     ``head.fusions[i].attention``
``fused``      the two-branch fusion f̂_i = f_i + A(f_i)       ``head.fusions[i]``
=============  ==============================================  ============================

``pytorch_grad_cam`` needs a model whose output is one tensor and modules whose
output is one tensor: :class:`CamModel` wraps :class:`~fusnet.models.MultiFusNet`
(whose forward returns a dataclass and whose backbone returns a list), putting an
``nn.Identity`` tap on each backbone level and returning either the hash outputs
u (B, bits) or the class logits (B, C).

Targets. With ``target="hash"`` (the default) the score differentiated is the
agreement of the hash output with the true class's proxy code, ``<u, P[y]>`` =
sum_j u_j P[y]_j (:class:`HashCodeTarget`): the quantity the hash loss pulls up,
so the map shows what makes the image's code its class's code. With
``target="class"`` it is the true class's logit (``ClassifierOutputTarget``); the
classifier reads only the top level's vector, so the lower levels' maps have no
gradient from it and only the top level is drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.models.multifusnet import MultiFusNet

logger = logging.getLogger(__name__)

CAM_KINDS: tuple[str, ...] = ("original", "attention", "fused")
"""The three maps of Fig. 10, in its column order."""

CAM_KIND_TITLES: dict[str, str] = {
    "original": "f",
    "attention": "A(f)",
    "fused": "f + A(f)",
}
CAM_TARGETS: tuple[str, ...] = ("hash", "class")


class CamModel(nn.Module):
    """MultiFusNet with one tensor output and an identity tap on each backbone level.

    Args:
        model: a trained model (its weights are shared, not copied).
        output: ``"hash"`` returns u (B, bits); ``"class"`` the class logits (B, C).
    """

    def __init__(self, model: MultiFusNet, output: str = "hash") -> None:
        super().__init__()
        if output not in CAM_TARGETS:
            raise ConfigError(f"CAM output must be one of {CAM_TARGETS}, got {output!r}")
        self.model = model
        self.output = output
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
        """The module whose output is the ``kind`` map of backbone level ``level`` (0-based).

        Raises:
            ConfigError: unknown kind, a level the head does not use, or an
                ``attention``/``fused`` map of a model without the fusion branch.
        """
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
    """Grad-CAM target: the agreement ``<u, code>`` of one image's hash output with a code.

    Args:
        code: (bits,) in {-1, +1}, e.g. the true class's proxy code.
    """

    def __init__(self, code: Tensor) -> None:
        self.code = code

    def __call__(self, model_output: Tensor) -> Tensor:
        code = self.code.to(model_output.device, model_output.dtype)
        return (model_output * code).sum(dim=-1)


def compute_cams(
    model: MultiFusNet,
    images: Tensor,
    labels: Sequence[int],
    proxy_codes: Tensor | None = None,
    target: str = "hash",
    kinds: Sequence[str] = CAM_KINDS,
) -> dict[tuple[str, int], np.ndarray]:
    """Grad-CAM maps of each kind at each level the head uses.

    Args:
        model: a trained model (set to eval mode here).
        images: (B, 3, H, W) normalised as for the model.
        labels: the images' true classes.
        proxy_codes: (C, bits) class proxy codes; needed for ``target="hash"``.
        target: ``"hash"`` or ``"class"`` (module docstring).
        kinds: which maps.

    Returns:
        ``(kind, level) -> (B, H, W)`` float32 maps in [0, 1] (each image min-max
        scaled by ``pytorch_grad_cam``), ``level`` 0-based; with ``target="class"``
        the top level only (module docstring).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    wrapper = CamModel(model, output=target).eval()
    if target == "hash":
        if proxy_codes is None:
            raise ConfigError("target='hash' needs the class proxy codes")
        targets = [HashCodeTarget(proxy_codes[int(y)]) for y in labels]
    else:
        targets = [ClassifierOutputTarget(int(y)) for y in labels]
    device = next(model.parameters()).device
    images = images.to(device)
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


def cam_table(
    maps: dict[tuple[str, int], np.ndarray], indices: Sequence[int], names: Sequence[str]
) -> pd.DataFrame:
    """Mean activation of every map of every image: image, class, kind, level (1-based)."""
    return pd.DataFrame(
        [
            {"image": int(i), "class": name, "kind": kind, "level": level + 1,
             "mean_activation": float(m[j].mean())}
            for (kind, level), m in maps.items()
            for j, (i, name) in enumerate(zip(indices, names, strict=True))
        ]
    )


def cam_summary(maps: dict[tuple[str, int], np.ndarray]) -> dict[str, float]:
    """Mean activation of each map, keyed ``"<kind>/level<i>"`` (1-based as in the paper)."""
    return {f"{kind}/level{level + 1}": float(m.mean()) for (kind, level), m in maps.items()}


def load_cam_batch(
    config: RunConfig, model: MultiFusNet, count: int
) -> tuple[Tensor, list[int], np.ndarray, list[str]]:
    """Test images for Fig. 10: one per class, classes spread evenly (as Fig. 12's queries).

    Args:
        config: the run's config (dataset, root, image size).
        model: the run's model (its input normalisation).
        count: number of images.

    Returns:
        images (B, 3, H, W) normalised for the model, their labels, their indices in
        the test split and their class names.
    """
    from fusnet.data.transforms import build_transform
    from fusnet.experiments.examples import choose_queries, split_dataset

    dataset = split_dataset(config, "test")
    dataset.transform = build_transform(
        config.data.image_size, train=False, mean=model.backbone.mean, std=model.backbone.std
    )
    indices = choose_queries(dataset.labels, min(count, len(dataset)))
    items = [dataset[int(i)] for i in indices]
    images = torch.stack([image for image, _ in items])  # (B, 3, H, W)
    labels = [int(label) for _, label in items]
    return images, labels, indices, [dataset.class_names[y] for y in labels]
