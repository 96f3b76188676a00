"""Image transforms of the paper ("Implementation details"; method.md section 5).

Train: resize the shorter side to ``round(image_size * 356 / 336)``, random crop
``image_size``, rotation within ±30°, horizontal flip p = 0.7, colour jitter 0.5
(brightness, contrast, saturation, hue), ``ToTensor``, normalisation. Test: the same
resize, centre crop, ``ToTensor``, normalisation. The paper "shrinks test images to
356 x 356"; we resize the shorter side (aspect kept) as the authors' code does, and crop
the training images from the same resize (the paper does not say). ``image_size``: 336
in the paper, 224 in the authors' code.
"""

from __future__ import annotations

from torchvision import transforms as T

from fusnet.errors import ConfigError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

PAPER_IMAGE_SIZE = 336
PAPER_RESIZE = 356


def resize_size(image_size: int) -> int:
    """Shorter-side resize for a crop of ``image_size``: 356 at 336 (the paper), 237 at 224."""
    return round(image_size * PAPER_RESIZE / PAPER_IMAGE_SIZE)


def build_transform(
    image_size: int = PAPER_IMAGE_SIZE,
    train: bool = True,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    augment: str = "paper",
) -> T.Compose:
    """The paper's training (``train``) or test transform: PIL RGB image -> normalised
    (3, image_size, image_size) float tensor.

    Args:
        image_size: side of the square network input.
        mean: per-channel normalisation mean the backbone's weights expect
            (``backbone.mean``; ImageNet's by default).
        std: per-channel normalisation std (``backbone.std``).
        augment: "paper" (module docstring) or "mild" (ours: ``RandomResizedCrop`` of
            35-100% of the area, flip p = 0.5, jitter 0.2 without hue; the paper's hue
            jitter turns a bird's colours into any other, and colour tells species apart).
    """
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    resize = T.Resize(resize_size(image_size), interpolation=T.InterpolationMode.BILINEAR)
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if not train:
        return T.Compose([resize, T.CenterCrop(image_size), *tail])
    if augment == "mild":
        return T.Compose(
            [
                T.RandomResizedCrop(image_size, scale=(0.35, 1.0),
                                    interpolation=T.InterpolationMode.BILINEAR),
                T.RandomHorizontalFlip(p=0.5),
                T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
                *tail,
            ]
        )
    if augment != "paper":
        raise ConfigError(f"augment must be 'paper' or 'mild', got {augment!r}")
    return T.Compose(
        [
            resize,
            T.RandomCrop(image_size),
            T.RandomRotation(30),
            T.RandomHorizontalFlip(p=0.7),
            T.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5),
            *tail,
        ]
    )
