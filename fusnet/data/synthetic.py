"""A synthetic fine-grained dataset, generated in memory: the demo default, no download.

SYNTHETIC DATA, not photographs: one object (a tan ellipse) on a blotchy background;
classes differ only in small details, the position, colour and shape of one mark and a
faint stripe pattern on the body. Each image has its own pose (position, scale, rotation
up to ±30°), tint, brightness, background and a distractor blob in a mark colour, so
neither colour nor position alone gives the class away. The class designs depend on
``data_seed`` only, a split's images on ``(data_seed, split)``; numpy-vectorised, a few
thousand 64-pixel images take a second or two.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from fusnet.data.base import ImageListDataset
from fusnet.data.layout import check_official_split
from fusnet.data.registry import register_dataset
from fusnet.errors import ConfigError

logger = logging.getLogger(__name__)

# Object geometry, in units of the image side (object frame, before per-image scale).
_BODY_AXES = (0.31, 0.19)  # ellipse semi-axes (along, across)
_MARK_RADIUS = 0.065
_MARK_POSITIONS = ((-0.16, 0.0), (0.16, 0.0), (0.0, -0.08), (0.0, 0.08))
_MARK_COLOURS = ((215, 55, 45), (45, 85, 215), (235, 205, 40), (40, 170, 75))
_MARK_SHAPES = ("disc", "square", "ring")
_BODY_PATTERNS = ("plain", "bands", "stripes")
_BODY_COLOUR = (165, 130, 95)

MAX_CLASSES = len(_MARK_POSITIONS) * len(_MARK_COLOURS) * len(_MARK_SHAPES) * len(_BODY_PATTERNS)
"""Number of distinct class designs (144)."""

_CHUNK = 512  # images rendered at once (bounds memory: ~CHUNK * size^2 * 40 bytes)


def class_designs(num_classes: int, seed: int) -> np.ndarray:
    """(num_classes, 4) int64 distinct designs, each ``(position, colour, shape, pattern)``
    indices; ConfigError unless ``2 <= num_classes <= MAX_CLASSES``."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"synthetic num_classes must be in 2..{MAX_CLASSES}, got {num_classes}")
    sizes = (len(_MARK_POSITIONS), len(_MARK_COLOURS), len(_MARK_SHAPES), len(_BODY_PATTERNS))
    combos = np.asarray(list(itertools.product(*map(range, sizes))), dtype=np.int64)  # (144, 4)
    rng = np.random.default_rng([seed, 0])
    return combos[rng.permutation(len(combos))[:num_classes]]


def _soft(distance: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Anti-aliased inside-mask of a shape: 1 inside ``distance < 1``, ~1 pixel ramp.

    Args:
        distance: (B, S, S) normalised distance (1 on the boundary).
        pixels: (B, 1, 1) size in pixels of one unit of ``distance``.
    """
    return np.clip(0.5 + (1.0 - distance) * pixels, 0.0, 1.0)


def _over(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Paint ``colour`` ((n, 1, 1, 3) or (n, S, S, 3)) over the (n, S, S, 3) float32
    ``img`` in place, with (n, S, S, 1) opacity ``alpha`` in [0, 1]."""
    delta = colour - img  # (n, S, S, 3)
    delta *= alpha
    img += delta


def _background(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(n, S, S, 3) float32 blotchy background: a bilinear 5x5 colour field plus grain."""
    grid = rng.uniform(50, 200, size=(n, 3, 5, 5)).astype(np.float32)  # (n, 3, 5, 5)
    t = np.linspace(0, 4, size, dtype=np.float32)  # (S,) position on the 5-point grid
    weights = np.maximum(0, 1 - np.abs(t[:, None] - np.arange(5, dtype=np.float32)))  # (S, 5)
    field = weights @ grid @ weights.T  # (n, 3, S, S) bilinear upsampling
    field = field.transpose(0, 2, 3, 1)  # (n, S, S, 3)
    noise = rng.standard_normal((n, size, size, 1), dtype=np.float32)  # (n, S, S, 1) grain
    noise *= 14
    return field + noise


def render(
    designs: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """(N, S, S, 3) uint8 images, one per label of (N,) ``labels``, of the (C, 4) class
    ``designs`` at side S = ``size``, varied by ``rng``."""
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # (S,)
    ys, xs = np.meshgrid(coords, coords, indexing="ij")  # (S, S) each
    positions = np.asarray(_MARK_POSITIONS, dtype=np.float32)
    colours = np.asarray(_MARK_COLOURS, dtype=np.float32)
    for start in range(0, len(labels), _CHUNK):
        lab = labels[start : start + _CHUNK]
        n = len(lab)
        d = designs[lab]  # (n, 4)
        img = _background(rng, n, size)  # (n, S, S, 3)

        def col(a: np.ndarray) -> np.ndarray:
            return a[:, None, None]  # (n,) -> (n, 1, 1)

        # distractor blob: a mark colour, somewhere, drawn under the object
        bx, by = rng.uniform(-0.42, 0.42, size=(2, n)).astype(np.float32)
        br = rng.uniform(0.04, 0.08, size=n).astype(np.float32)
        blob = np.sqrt(np.square(xs - col(bx)) + np.square(ys - col(by))) / col(br)  # (n, S, S)
        blob_alpha = _soft(blob, col(br) * size)[..., None]  # (n, S, S, 1)
        blob_colour = colours[rng.integers(0, len(colours), size=n)][:, None, None, :]
        _over(img, blob_alpha, blob_colour)

        # object pose: centre, scale, rotation; object-frame coordinates (u along, v across)
        cx, cy = rng.uniform(-0.1, 0.1, size=(2, n)).astype(np.float32)
        scale = rng.uniform(0.8, 1.2, size=n).astype(np.float32)
        angle = np.deg2rad(rng.uniform(-30, 30, size=n)).astype(np.float32)
        cos, sin = col(np.cos(angle)), col(np.sin(angle))
        dx, dy = xs - col(cx), ys - col(cy)  # (n, S, S)
        u = (cos * dx + sin * dy) / col(scale)  # (n, S, S)
        v = (-sin * dx + cos * dy) / col(scale)  # (n, S, S)
        px = col(scale) * size  # (n, 1, 1) pixels per object unit

        a, b = _BODY_AXES
        body = _soft(np.sqrt(np.square(u / a) + np.square(v / b)), px * b)  # (n, S, S)
        body = body[..., None]  # (n, S, S, 1)
        tint = rng.uniform(-25, 25, size=(n, 3)).astype(np.float32)
        body_colour = (np.asarray(_BODY_COLOUR, dtype=np.float32) + tint)[:, None, None, :]
        pattern = d[:, 3]
        shade = np.ones_like(u)  # (n, S, S)
        bands = (np.sin(2 * np.pi * u / 0.09) > 0).astype(np.float32)  # (n, S, S)
        stripes = (np.sin(2 * np.pi * v / 0.07) > 0).astype(np.float32)  # (n, S, S)
        shade = np.where(col(pattern == 1), 1 - 0.14 * bands, shade)
        shade = np.where(col(pattern == 2), 1 - 0.14 * stripes, shade)
        _over(img, body, shade[..., None] * body_colour)

        mu, mv = positions[d[:, 0]].T  # (n,) each
        du, dv = (u - col(mu)) / _MARK_RADIUS, (v - col(mv)) / _MARK_RADIUS  # (n, S, S)
        r = np.sqrt(du * du + dv * dv)  # (n, S, S)
        mpx = px * _MARK_RADIUS
        shape = d[:, 2]
        mark = np.where(
            col(shape == 0),
            _soft(r, mpx),
            np.where(
                col(shape == 1),
                _soft(np.maximum(np.abs(du), np.abs(dv)) / 0.85, mpx * 0.85),
                _soft(r, mpx) * (1 - _soft(r / 0.5, mpx * 0.5)),
            ),
        )[..., None]  # (n, S, S, 1)
        mark_colour = colours[d[:, 1]] + rng.uniform(-20, 20, size=(n, 3)).astype(np.float32)
        _over(img, mark, mark_colour[:, None, None, :])

        gain = rng.uniform(0.85, 1.15, size=n).astype(np.float32)[:, None, None, None]
        img *= gain
        out[start : start + n] = np.clip(img, 0, 255, out=img).round(out=img).astype(np.uint8)
    return out


class SyntheticDataset(ImageListDataset):
    """In-memory synthetic images (module docstring); items are PIL RGB images.

    ``samples`` holds placeholder paths that do not exist; ``root`` and ``data_dir`` are None.

    Attributes:
        images: (N, S, S, 3) uint8 pixels, item order.
        designs: (num_classes, 4) each class's (mark position, mark colour, mark shape,
            body pattern) indices.
    """

    def __init__(
        self,
        split: str,
        images: np.ndarray,
        labels: np.ndarray,
        designs: np.ndarray,
    ) -> None:
        class_names = [
            f"{_MARK_SHAPES[s]}-{['red', 'blue', 'yellow', 'green'][c]}-pos{p}-{_BODY_PATTERNS[t]}"
            for p, c, s, t in designs.tolist()
        ]
        samples = [
            (Path("synthetic") / split / f"{i:05d}.png", int(y)) for i, y in enumerate(labels)
        ]
        super().__init__("synthetic", split, samples, class_names)
        self.images = images
        self.designs = designs

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])  # (S, S, 3) uint8 -> RGB

    def _take(self, idx: np.ndarray) -> None:
        super()._take(idx)
        self.images = self.images[idx]

    def verify(
        self, *, skip_bad_images: bool = False, decode: bool = False
    ) -> list[tuple[Path, str]]:
        """Nothing to check: the images are generated in memory."""
        return []


@register_dataset("synthetic")
def load_synthetic(
    root: Path | None,
    split: str,
    *,
    num_classes: int = 10,
    train_per_class: int = 30,
    test_per_class: int = 10,
    image_size: int = 64,
    data_seed: int = 0,
) -> SyntheticDataset:
    """The synthetic fine-grained set (``root`` is ignored), class-major order.

    Args:
        num_classes: number of classes (2..144).
        train_per_class, test_per_class: images per class of each split.
        image_size: side of the square images, pixels (>= 16).
        data_seed: generation seed (class designs and images); ``build_dataset``'s
            ``seed`` only carves ``val``.
    """
    check_official_split("synthetic", split)
    if image_size < 16:
        raise ConfigError(f"synthetic image_size must be >= 16, got {image_size}")
    per_class = train_per_class if split == "train" else test_per_class
    if per_class < 1:
        raise ConfigError(f"synthetic {split}_per_class must be >= 1, got {per_class}")
    designs = class_designs(num_classes, data_seed)
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)  # (N,)
    rng = np.random.default_rng([data_seed, 1 if split == "train" else 2])
    images = render(designs, labels, image_size, rng)
    if root is not None:
        logger.debug("synthetic dataset ignores root=%s", root)
    return SyntheticDataset(split, images, labels, designs)
