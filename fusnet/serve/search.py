"""Query-by-image search over a trained run's database codes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fusnet.data import build_dataset
from fusnet.data.transforms import build_transform
from fusnet.errors import DataError
from fusnet.eval.encoding import load_codes
from fusnet.eval.retrieval import hamming_topk, pack_codes
from fusnet.runtime import resolve_device
from fusnet.train.batches import dataset_kwargs
from fusnet.train.checkpoints import load_model

logger = logging.getLogger(__name__)


def search_image(
    run_dir: Path, image_path: Path, k: int = 10, sheet: str | Path | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Encode one image with a run's model and return its k nearest database images.

    Ties in Hamming distance are broken by database index. With ``sheet``, also
    save a contact sheet (query first, then the hits with their distances).
    """
    torch_device = resolve_device(device)
    model, config = load_model(run_dir / "model.pt", torch_device)
    codes_file = run_dir / "codes.npz"
    if not codes_file.is_file():
        raise DataError(f"{codes_file} is missing: train the run to completion first")
    saved = load_codes(codes_file)  # names the file if it is foreign or cut short
    if saved["bits"] != config.model.bits:
        raise DataError(
            f"{codes_file} holds {saved['bits']}-bit codes but {run_dir / 'model.pt'} makes "
            f"{config.model.bits}-bit codes; pass the run folder that holds both (e.g. RUN/bits"
            f"{config.model.bits})"
        )
    db_packed = pack_codes(saved["db_codes"])
    transform = build_transform(
        config.data.test_image_size, train=False, mean=model.backbone.mean, std=model.backbone.std
    )
    database = build_dataset(config.data.dataset, config.data.root, "train", **dataset_kwargs(config))
    if len(database) != len(db_packed):
        raise DataError(
            f"{codes_file} holds {len(db_packed)} codes but {config.data.dataset} has "
            f"{len(database)} training images: the data changed since the run"
        )
    try:
        image = Image.open(image_path).convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read query image {image_path}: {exc}") from exc
    model.eval()
    query = model.encode(transform(image).unsqueeze(0).to(torch_device)).cpu()  # (1, bits)
    distances, indices = hamming_topk(pack_codes(query), db_packed, min(k, len(db_packed)))
    hits = []
    for distance, index in zip(distances[0].tolist(), indices[0].tolist(), strict=True):
        path, label = _sample(database, index)
        hits.append(
            {"index": index, "distance": int(distance), "label": int(label),
             "class_name": database.class_names[label], "path": str(path)}
        )
    if sheet is not None:
        save_contact_sheet(image, [_load(database, h["index"]) for h in hits], hits, Path(sheet))
    return hits


def _sample(dataset, index: int) -> tuple[str, int]:
    if getattr(dataset, "samples", None):
        path, label = dataset.samples[index]
        return str(path), int(label)
    return f"{dataset.__class__.__name__}[{index}]", int(dataset.labels[index])


def _load(dataset, index: int) -> Image.Image:
    image, _ = dataset[index]
    return image


def save_contact_sheet(
    query: Image.Image, results: list[Image.Image], hits: list[dict[str, Any]], path: Path
) -> None:
    """Query and results side by side, each captioned with class and distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = len(results) + 1
    fig, axes = plt.subplots(1, columns, figsize=(2.0 * columns, 2.4))
    axes = np.atleast_1d(axes)
    axes[0].imshow(query)
    axes[0].set_title("query", fontsize=8)
    for ax, image, hit in zip(axes[1:], results, hits, strict=True):
        ax.imshow(image)
        ax.set_title(f"{hit['class_name'][:18]}\nd={hit['distance']}", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
