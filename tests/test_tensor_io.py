"""The tensor input pipeline (fusnet.data.tensor_io) against the PIL one, on real CUB photos."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fusnet.data import build_dataset, build_transform, load_rgb
from fusnet.data.base import ImageListDataset
from fusnet.data.tensor_io import (
    build_image_transform,
    build_tensor_transform,
    read_image_tensor,
    set_image_backend,
)
from fusnet.data.tensor_kernels import FastColorJitter, adjust_hue, rotate_nearest
from fusnet.data.transforms import IMAGENET_STD
from fusnet.errors import ConfigError, DataError

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec (one warning a call)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

GREY_LEVELS = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255  # (3, 1, 1) normalised unit -> 0..255


@pytest.fixture(scope="module")
def cub_photos(cub100_root: Path) -> list[Path]:
    """40 CUB photos spread over the classes of the train split."""
    samples = build_dataset("cub200", cub100_root, "train").samples
    return [path for path, _ in samples[:: len(samples) // 40]][:40]


@pytest.mark.parametrize("size", [224, 336])
@pytest.mark.parametrize("kernels", ["fast", "v2"])
def test_test_transform_matches_pil_on_real_photos(
    cub_photos: list[Path], size: int, kernels: str
) -> None:
    # Measured (99 CUB photos, 224 and 336 px, torchvision 0.29 / Pillow 13): identical
    # decoded pixels (both use libjpeg-turbo 3 with the same IDCT and chroma upsampling),
    # and torch's antialiased uint8 bilinear resize is a port of PIL's fixed-point one,
    # so only isolated pixels differ, by one grey level (rounding): mean abs difference
    # 4e-6 grey levels, max 1. The bounds leave room for float error only, not for a
    # different resize: measured on CUB photos, resizing on float instead of uint8 gives
    # a mean of 0.2-0.3 grey levels, bicubic 0.3-1.4, 238 px instead of 237 2-9.
    # Antialiasing changes nothing here: 227 -> 237 (or 356) px is an upsampling.
    pil_tf = build_transform(size, train=False)
    tensor_tf = build_tensor_transform(size, train=False, kernels=kernels)
    for path in cub_photos:
        expected = pil_tf(load_rgb(path))  # (3, S, S)
        got = tensor_tf(read_image_tensor(path))  # (3, S, S)
        assert got.shape == expected.shape == (3, size, size) and got.dtype == torch.float32
        diff = ((got - expected) * GREY_LEVELS).abs()  # (3, S, S) in grey levels
        assert diff.mean().item() < 0.01, path
        assert diff.max().item() <= 1.0 + 1e-3, path


def test_read_image_tensor_decodes_jpeg_as_pil_does(cub_photos: list[Path]) -> None:
    for path in cub_photos[:10]:
        image = read_image_tensor(path)  # (3, H, W)
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        reference = torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1)  # (3, H, W)
        assert torch.equal(image, reference)


@pytest.mark.parametrize("augment", ["paper", "mild"])
@pytest.mark.parametrize("kernels", ["fast", "v2"])
def test_train_transform_shape_dtype_range_and_seed(
    cub_photos: list[Path], augment: str, kernels: str
) -> None:
    tf = build_tensor_transform(224, train=True, augment=augment, kernels=kernels)
    image = read_image_tensor(cub_photos[0])  # (3, H, W) uint8
    torch.manual_seed(0)
    first = [tf(image) for _ in range(3)]  # 3 x (3, 224, 224)
    torch.manual_seed(0)
    again = [tf(image) for _ in range(3)]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)  # (3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)  # (3, 1, 1)
    for x, y in zip(first, again, strict=True):
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        assert torch.equal(x, y)  # same seed, same augmentation
        pixels = x * std + mean  # (3, 224, 224) back in [0, 1]
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert not torch.equal(first[0], first[1])  # the draws do differ between calls
    torch.manual_seed(0)
    assert torch.equal(pickle.loads(pickle.dumps(tf))(image), first[0])  # as in a worker
    assert torch.equal(image, read_image_tensor(cub_photos[0]))  # input left untouched


@pytest.mark.parametrize("augment", ["paper", "mild"])
def test_fast_kernels_draw_what_v2_draws(cub_photos: list[Path], augment: str) -> None:
    # Same seed, same parameters; the fast jitter works on float, v2's on uint8 (which
    # rounds down after each of its steps): measured mean difference 1.3-1.4 grey levels.
    fast = build_tensor_transform(224, train=True, augment=augment, kernels="fast")
    ref = build_tensor_transform(224, train=True, augment=augment, kernels="v2")
    for i, path in enumerate(cub_photos[:10]):
        image = read_image_tensor(path)
        torch.manual_seed(i)
        a = fast(image)
        torch.manual_seed(i)
        b = ref(image)
        assert ((a - b) * GREY_LEVELS).abs().mean().item() < 2.5, path


def test_fast_color_jitter_equals_v2_on_float(cub_photos: list[Path]) -> None:
    image = F.to_dtype(read_image_tensor(cub_photos[1])[:, :200, :200], torch.float32, scale=True)
    fast = FastColorJitter(0.5, 0.5, 0.5, 0.5)
    ref = v2.ColorJitter(0.5, 0.5, 0.5, 0.5)
    for seed in range(8):
        torch.manual_seed(seed)
        a = fast(image)
        torch.manual_seed(seed)
        b = ref(image)
        assert (a - b).abs().max().item() < 1e-4


@pytest.mark.parametrize("factor", [-0.5, -0.31, 0.0, 0.02, 0.25, 0.5])
def test_adjust_hue_equals_torchvision(factor: float) -> None:
    torch.manual_seed(1)
    image = torch.rand(3, 40, 50)  # (3, H, W)
    image[:, :5] = 0.4  # grey: no hue
    image[0, 5:10] = image[1, 5:10]  # ties for the max channel
    image[:, 10:12] = 0.0
    assert (adjust_hue(image, factor) - F.adjust_hue(image, factor)).abs().max().item() < 1e-5


@pytest.mark.parametrize("angle", [-29.7, -12.0, 0.5, 7.3, 30.0, 45.0, 90.0, 180.0])
@pytest.mark.parametrize("shape", [(3, 61, 80), (3, 224, 224)])
def test_rotate_nearest_equals_torchvision(angle: float, shape: tuple[int, int, int]) -> None:
    if angle == 90.0 and shape[1] != shape[2]:
        # a quarter turn of a W - H odd image puts every source coordinate exactly on a
        # half pixel, where float error decides the rounding (module docstring); the
        # paper's angles are continuous in [-30, 30], where such ties have probability 0
        pytest.skip("exact half-pixel ties")
    torch.manual_seed(2)
    image = torch.randint(0, 256, shape, dtype=torch.uint8)  # (3, H, W)
    differ = (rotate_nearest(image, angle) != F.rotate(image, angle)).any(0)  # (H, W)
    # torchvision rounds normalised grid coordinates, we round pixel ones: a source
    # coordinate within float error of a half pixel may go either way (measured: 0-2
    # pixels of 50,176 at 224 px, none at 61 x 80)
    assert differ.sum().item() <= max(1, 1e-4 * differ.numel())


def test_rotate_and_flip_in_one_gather() -> None:
    torch.manual_seed(3)
    image = torch.randint(0, 256, (3, 237, 237), dtype=torch.uint8)  # (3, H, W)
    crop = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)[:, 5:229, 9:233]  # channels-last view
    for angle in (-21.3, 4.4):
        expected = F.horizontal_flip(F.rotate(crop, angle))  # (3, 224, 224)
        got = rotate_nearest(crop, angle, hflip=True)
        assert got.is_contiguous()
        assert (got != expected).any(0).sum().item() <= 5  # half-pixel ties, as above


def test_bad_files_give_a_clear_error(tmp_path: Path, cub_photos: list[Path]) -> None:
    data = cub_photos[0].read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + b"x" * 64)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    for path in (truncated, garbage, not_image, tmp_path / "missing.jpg"):
        with pytest.raises(DataError, match=str(path)):
            read_image_tensor(path)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_decode_to_the_rgb_pil_gives(tmp_path: Path, mode: str) -> None:
    ramp = (np.add.outer(np.arange(40), np.arange(50)) * 2).astype(np.uint8)  # (H, W)
    rgb = np.stack([ramp, 255 - ramp, ramp // 2], axis=-1)  # (H, W, 3)
    image = Image.fromarray(ramp) if mode == "L" else Image.fromarray(rgb).convert("CMYK")
    image.save(tmp_path / "x.jpg", quality=95)
    got = read_image_tensor(tmp_path / "x.jpg")  # (3, H, W)
    expected = torch.from_numpy(np.array(load_rgb(tmp_path / "x.jpg"))).permute(2, 0, 1)
    assert got.shape == (3, 40, 50) and torch.equal(got, expected)


def test_non_jpeg_files_fall_back_to_pil(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # (H, W, 3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    grey16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "b.png")
    assert torch.equal(read_image_tensor(tmp_path / "a.png"), torch.from_numpy(rgb).permute(2, 0, 1))
    grey = read_image_tensor(tmp_path / "b.png")  # (3, 30, 40), scaled as load_rgb does
    assert grey.dtype == torch.uint8 and grey.shape == (3, 30, 40)
    assert torch.equal(grey, torch.from_numpy(np.array(load_rgb(tmp_path / "b.png"))).permute(2, 0, 1))


def test_dataset_backend_switch(cub100_root: Path) -> None:
    pil = build_dataset("cub200", cub100_root, "test", build_transform(224, train=False))
    assert pil.image_backend == "pil"  # the default is unchanged
    assert isinstance(pil.load_image(0), Image.Image)
    tensor = set_image_backend(
        build_dataset("cub200", cub100_root, "test"), "tensor", build_tensor_transform(224, train=False)
    )
    x, y = tensor[0]
    assert isinstance(tensor.load_image(0), torch.Tensor)
    assert x.shape == (3, 224, 224) and y == pil[0][1]
    assert ((x - pil[0][0]) * GREY_LEVELS).abs().max().item() <= 1.0 + 1e-3
    sub = tensor.subset([0, 1])
    assert sub.image_backend == "tensor"
    clone = pickle.loads(pickle.dumps(tensor))  # what DataLoader workers get
    assert torch.equal(clone[0][0], x)
    flagged = build_dataset("cub200", cub100_root, "test")
    for backend in ("pil", "tensor"):  # one flag picks loader and transform together
        set_image_backend(flagged, backend, build_image_transform(224, False, image_backend=backend))
        image, _ = flagged[0]
        assert ((image - x) * GREY_LEVELS).abs().max().item() <= 1.0 + 1e-3


class _Generated(ImageListDataset):
    """A dataset that draws its images (as the synthetic one does) instead of reading files."""

    def load_image(self, index: int) -> Image.Image:
        return Image.new("RGB", (8, 8))


def test_backend_refuses_generated_datasets_and_bad_options() -> None:
    generated = _Generated("gen", "train", [(Path("x.png"), 0)], ["a"])
    with pytest.raises(ConfigError, match="tensor backend"):
        set_image_backend(generated, "tensor", None)
    assert set_image_backend(generated, "pil", None).image_backend == "pil"
    with pytest.raises(ConfigError, match="image_backend"):
        set_image_backend(generated, "cv2", None)
    with pytest.raises(ConfigError, match="image_backend"):
        build_image_transform(224, image_backend="cv2")
    with pytest.raises(ConfigError, match="kernels"):
        build_tensor_transform(224, kernels="numba")
    with pytest.raises(ConfigError, match="augment"):
        build_tensor_transform(224, augment="strong")
    with pytest.raises(ConfigError, match="image_size"):
        build_tensor_transform(0)
