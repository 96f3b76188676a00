"""A self-contained model file, and the encoder that loads it (``fusnet.load``).

``fusnet export RUN --output model.fusnet`` (:func:`export_model`) writes one file
holding everything needed to turn images into codes without the run folder or its
dataset: the weights, the run's config, the class names, the class proxy codes
(Multi-FusNet), the test transform's parameters, the code length and a model id
(a hash of the weights that a gallery index records, so it can refuse codes from
another model).

The file is a fusnet checkpoint (``fusnet.train.checkpoints.load_model`` rebuilds the network
from it, so ``fusnet encode --model model.fusnet`` works as well) with an
``export`` section. :func:`load` reads it with ``torch.load(weights_only=True)``
and returns an :class:`Encoder`::

    >>> import fusnet
    >>> model = fusnet.load("model.fusnet")
    >>> packed = model.encode(["a.jpg", "b.jpg"])  # (2, ceil(bits / 8)) uint8
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from fusnet.config import RunConfig
from fusnet.data.base import to_rgb
from fusnet.data.transforms import build_transform, resize_size
from fusnet.errors import CheckpointError, DataError
from fusnet.eval.encoding import sign_codes
from fusnet.eval.retrieval import pack_codes
from fusnet.methods import MULTIFUSNET
from fusnet.runtime import atomic_torch_save, resolve_device
from fusnet.train.checkpoints import load_checkpoint, load_model
from fusnet.version import __version__

logger = logging.getLogger(__name__)

EXPORT_VERSION = 1
"""Version of the ``export`` section; a file with another version is refused."""

ImageInput = str | Path | Image.Image | Tensor


def model_id(state: dict[str, Tensor]) -> str:
    """A short hash of a state dict's names, shapes and values (hex, 16 characters)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else
                      tensor.float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _model_file(run: Path) -> Path:
    """``RUN/model.pt`` for a run folder, the path itself for a file."""
    path = run / "model.pt" if run.is_dir() else run
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist: pass a finished run folder (holding model.pt) or its model.pt"
        )
    return path


def export_model(run: str | Path, output: str | Path) -> Path:
    """Write a self-contained model file from a finished run.

    Args:
        run: a run folder holding ``model.pt`` (e.g. ``runs/demo/bits48``) or the file.
        output: the model file to write (``.fusnet`` by convention).

    Returns:
        The path written.

    Raises:
        CheckpointError: the run has no readable ``model.pt``.
    """
    source = _model_file(Path(run))
    payload = load_checkpoint(source)
    if "model" not in payload:
        raise CheckpointError(
            f"{source} is a training checkpoint, not a finished model: let the run finish "
            "(it writes model.pt), then export that"
        )
    model, config = load_model(source)  # checks the weights fit the config
    num_classes = int(payload["num_classes"])
    class_names = payload.get("class_names") or [f"class {c}" for c in range(num_classes)]
    proxy = None
    if config.method == MULTIFUSNET:
        from fusnet.models.proxy_codes import class_proxy_codes

        proxy = class_proxy_codes(  # deterministic from the config: the training targets
            num_classes, config.model.bits, config.loss.proxy_iterations, seed=config.loss.proxy_seed
        )  # (C, bits)
    image_size = config.data.test_image_size
    payload["class_names"] = list(class_names)
    payload["export"] = {
        "version": EXPORT_VERSION,
        "fusnet_version": __version__,
        "bits": int(config.model.bits),
        "model_id": model_id(payload["model"]),
        "proxy_codes": proxy,
        "transform": {
            "image_size": image_size,
            "resize": resize_size(image_size),
            "mean": [float(m) for m in model.backbone.mean],
            "std": [float(s) for s in model.backbone.std],
        },
        "source": str(source),
    }
    output = Path(output)
    atomic_torch_save(payload, output)
    logger.info("exported %s (%d bits, model id %s) -> %s", source, config.model.bits,
                payload["export"]["model_id"], output)
    return output


def read_export(path: str | Path) -> dict[str, Any]:
    """The ``export`` section of a model file, checked (the weights are not rebuilt).

    Raises:
        CheckpointError: the file is missing, not a fusnet model file, or from
            another export version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist: write one with `fusnet export RUN --output {path}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc)  # torch's advice to load with weights_only=False would run the file's code
        if "weights_only" in reason:
            reason = reason.partition("WeightsUnpickler error:")[2].strip().split("\n")[0].split(". ")[0]
            reason = "not a plain tensor file" if not reason or "weights_only" in reason else reason
        raise CheckpointError(
            f"{path} is not a fusnet model file ({type(exc).__name__}: {reason}); "
            "write one with `fusnet export RUN --output FILE`"
        ) from None
    export = payload.get("export") if isinstance(payload, dict) else None
    if not isinstance(export, dict):
        raise CheckpointError(
            f"{path} is not an exported fusnet model (no export section); a run's model.pt is "
            f"exported with `fusnet export RUN_FOLDER --output {path.with_suffix('.fusnet').name}`"
        )
    if export.get("version") != EXPORT_VERSION:
        raise CheckpointError(
            f"{path} was exported in format version {export.get('version')} by fusnet "
            f"{export.get('fusnet_version')}; this fusnet ({__version__}) reads version "
            f"{EXPORT_VERSION}: export the run again with this fusnet"
        )
    return {**export, "class_names": payload.get("class_names"), "config": payload["config"]}


class Encoder:
    """A trained hashing network with its test transform: images in, packed codes out.

    Built by :func:`load`. Attributes: ``model`` (the network, in eval mode),
    ``config`` (its :class:`RunConfig`), ``bits``, ``class_names``, ``proxy_codes``
    ((C, bits) float tensor in {-1, +1}, or None for a baseline), ``transform``
    (PIL image -> normalised (3, S, S) tensor), ``model_id``, ``device``, ``path``.
    """

    def __init__(self, model: nn.Module, config: RunConfig, export: dict[str, Any],
                 device: torch.device, path: Path) -> None:
        self.model = model.eval()
        self.config = config
        self.bits: int = int(export["bits"])
        self.class_names: list[str] = list(export["class_names"] or [])
        self.proxy_codes: Tensor | None = export["proxy_codes"]
        self.model_id: str = export["model_id"]
        self.device = device
        self.path = path
        spec = export["transform"]
        if resize_size(spec["image_size"]) != spec["resize"]:
            raise CheckpointError(
                f"{path}: its test transform resizes to {spec['resize']} px but this fusnet's "
                f"resizes to {resize_size(spec['image_size'])}: export the run again with this fusnet"
            )
        self.transform = build_transform(
            spec["image_size"], train=False, mean=tuple(spec["mean"]), std=tuple(spec["std"])
        )
        self.image_size: int = int(spec["image_size"])

    def __repr__(self) -> str:
        return (f"Encoder({self.config.method}, {self.bits} bits, {self.config.model.backbone}, "
                f"{self.image_size} px, id {self.model_id})")

    def preprocess(self, image: ImageInput) -> Tensor:
        """One image (path, PIL image or a transformed (3, S, S) tensor) -> (3, S, S) tensor."""
        if isinstance(image, Tensor):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"a tensor image must be a transformed (3, H, W) tensor (Encoder.transform), "
                    f"got shape {tuple(image.shape)}"
                )
            return image
        if isinstance(image, str | Path):
            image = open_image(Path(image))
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected an image path, PIL image or tensor, got {type(image).__name__}")
        return self.transform(to_rgb(image))  # (3, S, S)

    @torch.no_grad()
    def codes(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32) -> Tensor:
        """Codes in {-1, +1}, (n, bits) float32 on the CPU; sign(0) = +1.

        Args:
            images: one image or a sequence of them: file paths, PIL images, or
                tensors already transformed by :attr:`transform` ((3, S, S) each, or
                one (n, 3, S, S) batch).
            batch_size: images per forward pass.
        """
        if isinstance(images, Tensor) and images.ndim == 4:
            batches: Iterable[Tensor] = images.split(batch_size)
        else:
            items = [images] if isinstance(images, str | Path | Image.Image | Tensor) else list(images)
            if not items:
                raise ValueError("no images to encode")
            batches = (
                torch.stack([self.preprocess(x) for x in items[s : s + batch_size]])
                for s in range(0, len(items), batch_size)
            )
        out = []
        for batch in batches:
            u = self.model(batch.to(self.device)).hash_logits  # (B, bits)
            out.append(sign_codes(u.float()).cpu())
        return torch.cat(out)  # (n, bits)

    def encode(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """Packed codes, (n, ceil(bits / 8)) uint8 (``fusnet.eval.retrieval.pack_codes`` order).

        Args:
            images: as for :meth:`codes`.
            batch_size: images per forward pass.
        """
        return pack_codes(self.codes(images, batch_size))


def open_image(path: Path) -> Image.Image:
    """Open an image file as RGB, or raise a DataError naming it."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def load(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load a model file written by :func:`export_model` (``fusnet export``).

    Args:
        path: the model file.
        device: "cpu", "cuda", "mps" or "auto".

    Returns:
        An :class:`Encoder` in eval mode.

    Raises:
        CheckpointError: not a fusnet model file, or one from another export version.
    """
    path = Path(path)
    export = read_export(path)
    torch_device = resolve_device(device) if isinstance(device, str) else device
    model, config = load_model(path, torch_device)
    return Encoder(model, config, export, torch_device, path)
