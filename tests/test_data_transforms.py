"""The paper's train and test transforms."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from fusnet.data import IMAGENET_MEAN, IMAGENET_STD, build_transform, resize_size
from fusnet.errors import ConfigError


def _image(w: int = 300, h: int = 200) -> Image.Image:
    grad = torch.linspace(0, 255, w).repeat(h, 1)  # (H, W)
    rgb = torch.stack([grad, grad.flip(1), torch.full_like(grad, 90)], dim=-1)  # (H, W, 3)
    return Image.fromarray(rgb.to(torch.uint8).numpy())


def test_resize_follows_356_over_336() -> None:
    assert resize_size(336) == 356
    assert resize_size(224) == 237
    assert resize_size(64) == 68


@pytest.mark.parametrize("size", [224, 336])
def test_output_shapes(size: int) -> None:
    for train in (True, False):
        x = build_transform(size, train=train)(_image())
        assert x.shape == (3, size, size) and x.dtype == torch.float32  # (3, H, W)


def test_test_transform_is_deterministic_resize_and_centre_crop() -> None:
    tf = build_transform(224, train=False)
    steps = tf.transforms
    assert isinstance(steps[0], T.Resize) and steps[0].size == 237
    assert isinstance(steps[1], T.CenterCrop)
    assert isinstance(steps[-1], T.Normalize)
    assert tuple(steps[-1].mean) == IMAGENET_MEAN and tuple(steps[-1].std) == IMAGENET_STD
    image = _image()
    assert torch.equal(tf(image), tf(image))


def test_train_transform_has_the_paper_augmentations() -> None:
    steps = build_transform(336, train=True).transforms
    kinds = [type(s) for s in steps]
    assert kinds == [
        T.Resize,
        T.RandomCrop,
        T.RandomRotation,
        T.RandomHorizontalFlip,
        T.ColorJitter,
        T.ToTensor,
        T.Normalize,
    ]
    assert steps[0].size == 356 and steps[1].size == (336, 336)
    assert steps[2].degrees == [-30.0, 30.0]
    assert steps[3].p == 0.7
    jitter = steps[4]
    assert jitter.brightness == (0.5, 1.5) and jitter.contrast == (0.5, 1.5)
    assert jitter.saturation == (0.5, 1.5) and jitter.hue == (-0.5, 0.5)


def test_train_transform_is_random() -> None:
    tf = build_transform(64, train=True)
    torch.manual_seed(0)
    a, b = tf(_image()), tf(_image())
    assert not torch.equal(a, b)


def test_bad_size() -> None:
    with pytest.raises(ConfigError):
        build_transform(0)
