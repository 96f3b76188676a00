"""Attention-guided zoom (method.md section 3), on the CPU with small images."""

from __future__ import annotations

import pytest
import torch

from fusnet.errors import ConfigError
from fusnet.models.zoom import SaliencyZoom, ZoomConfig, saliency_from_features
from tests.zoom_reference import zoom_per_image_reference

MODES = ["random", "all", "sampled", "max", "none"]


def _ramp_images(batch: int, h: int, w: int) -> torch.Tensor:
    """Channel 0 = x ramp, channel 1 = y ramp: the output reads off the sampling grid."""
    xs = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    ys = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    img = torch.stack([xs, ys, 0.5 * (xs + ys)])  # (3, H, W)
    return img.expand(batch, 3, h, w).contiguous()


def _hot_cell_case() -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """A 64x64 black image with a 7x7 white square where an 8x8 saliency map is hot."""
    img = torch.zeros(1, 3, 64, 64)
    sal = torch.zeros(1, 8, 8)
    sal[0, 5, 2] = 1.0  # cell (5, 2) of 8 sits at pixel (5/7·63, 2/7·63) = (45, 18)
    img[:, :, 42:49, 15:22] = 1.0
    return img, sal, (45.0, 18.0)


def test_output_shape_and_dtype() -> None:
    zoom = SaliencyZoom()
    img = torch.rand(2, 3, 40, 48)
    out = zoom(img, torch.rand(2, 5, 6), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 40, 48)
    assert out.dtype == img.dtype
    sized = SaliencyZoom(ZoomConfig(output_size=(32, 24)))
    assert sized(img, torch.rand(2, 5, 6)).shape == (2, 3, 32, 24)


@pytest.mark.parametrize("mode", MODES)
def test_flat_saliency_is_identity(mode: str) -> None:
    zoom = SaliencyZoom(ZoomConfig(peak_mode=mode))
    img = torch.rand(3, 3, 32, 40)
    for value in (1.0, 0.0):  # constant and all-zero maps: no peaks, no NaN
        out = zoom(img, torch.full((3, 7, 7), value), generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, img, atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_peak_magnifies_salient_region(mode: str) -> None:
    img, sal, (cy, cx) = _hot_cell_case()
    zoom = SaliencyZoom(ZoomConfig(peak_mode=mode))
    out = zoom(img, sal, generator=torch.Generator().manual_seed(0))
    bright = out[0, 0] > 0.5  # (H, W)
    assert int(bright.sum()) > 2 * 49  # the square covers at least twice its area
    ys, xs = torch.nonzero(bright, as_tuple=True)
    assert abs(ys.float().mean().item() - cy) < 4
    assert abs(xs.float().mean().item() - cx) < 4


@pytest.mark.parametrize("mode", MODES)
def test_batch_equals_per_image_and_reference(mode: str) -> None:
    zoom = SaliencyZoom(ZoomConfig(peak_mode=mode))
    gen = torch.Generator().manual_seed(1)
    sal = torch.rand(5, 6, 6, generator=gen) ** 3
    modes, coins = zoom.draw_random(5, torch.device("cpu"), gen)
    img = _ramp_images(5, 40, 40)
    out = zoom(img, sal, modes=modes, coins=coins)
    singles = torch.cat(
        [
            zoom(img[b : b + 1], sal[b : b + 1], modes=modes[b : b + 1], coins=coins[b : b + 1])
            for b in range(5)
        ]
    )
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=0)
    ref = zoom_per_image_reference(zoom, img, sal, modes, coins)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    noisy = torch.rand(5, 3, 40, 40, generator=gen)
    ref_noisy = zoom_per_image_reference(zoom, noisy, sal, modes, coins)
    torch.testing.assert_close(
        zoom(noisy, sal, modes=modes, coins=coins), ref_noisy, atol=2e-3, rtol=0
    )


def test_random_mode_draws_all_three_modes() -> None:
    zoom = SaliencyZoom()
    modes, coins = zoom.draw_random(64, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert set(modes.tolist()) == {0, 1, 2}
    assert coins.shape == (64, 31, 31)
    fixed, _ = SaliencyZoom(ZoomConfig(peak_mode="max")).draw_random(4, torch.device("cpu"))
    assert fixed.tolist() == [2, 2, 2, 2]


def test_deterministic_with_generator_and_global_rng_untouched() -> None:
    zoom = SaliencyZoom()
    img, sal = torch.rand(4, 3, 32, 32), torch.rand(4, 7, 7)
    state = torch.get_rng_state()
    a = zoom(img, sal, generator=torch.Generator().manual_seed(5))
    b = zoom(img, sal, generator=torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, b)


def test_low_precision_inputs_under_autocast() -> None:
    zoom = SaliencyZoom()
    gen = torch.Generator().manual_seed(2)
    img, sal = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 2048, 4, 4, generator=gen)
    modes, coins = zoom.draw_random(2, torch.device("cpu"), gen)
    ref = zoom(img, saliency_from_features(sal), modes=modes, coins=coins)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = zoom(img.bfloat16(), saliency_from_features(sal.bfloat16()), modes=modes, coins=coins)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=0)
    half = zoom(img.half(), saliency_from_features(sal), modes=modes, coins=coins)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, atol=2e-3, rtol=0)


def test_saliency_from_features() -> None:
    f3 = torch.rand(2, 16, 3, 4, requires_grad=True)
    sal = saliency_from_features(f3)
    assert sal.shape == (2, 3, 4)
    assert not sal.requires_grad
    torch.testing.assert_close(sal, f3.detach().sum(dim=1))


def test_authors_align_corners_shrinks_by_half_a_pixel() -> None:
    zoom = SaliencyZoom(ZoomConfig(align_corners=False))
    img = torch.ones(1, 3, 16, 16)
    out = zoom(img, torch.ones(1, 4, 4))
    # border pixels sample half outside the image (zero padding), the interior stays
    assert out[0, 0, 0, 0].item() == pytest.approx(0.25, abs=1e-4)
    assert out[0, 0, 8, 8].item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [{"grid_size": 1}, {"padding": -1}, {"fwhm": 0.0}, {"peak_mode": "best"}, {"base_ratio": 0.0}],
)
def test_bad_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ZoomConfig(**kwargs)


def test_bad_shapes() -> None:
    zoom = SaliencyZoom()
    with pytest.raises(ValueError):
        zoom(torch.rand(2, 3, 8, 8), torch.rand(3, 4, 4))
    with pytest.raises(ValueError):
        zoom(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 4, 4))
