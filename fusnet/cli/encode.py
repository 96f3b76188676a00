"""``fusnet encode``: images -> packed binary codes (.npz), its parser and its command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fusnet.cli.errors import non_negative_int, positive_int
from fusnet.config import RunConfig
from fusnet.errors import FusnetError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("fusnet")


def cmd_encode(args: argparse.Namespace) -> int:
    """``fusnet encode``: write the codes, labels and paths of a split to ``--output``."""
    import numpy as np

    from fusnet.data import build_dataset
    from fusnet.data.transforms import build_transform
    from fusnet.eval.encoding import encode_dataset
    from fusnet.eval.retrieval import pack_codes
    from fusnet.runtime import atomic_savez, resolve_device
    from fusnet.train.batches import dataset_kwargs
    from fusnet.train.checkpoints import load_model

    device = resolve_device(args.device)
    model, config = load_model(args.model, device)
    transform = build_transform(
        config.data.test_image_size, train=False, mean=model.backbone.mean, std=model.backbone.std
    )
    same_data = args.dataset in (None, config.data.dataset)
    dataset = build_dataset(
        args.dataset or config.data.dataset, args.root or config.data.root, args.split,
        transform=transform, **(dataset_kwargs(config) if same_data else {}),
    )
    learned = _learned_database_codes(args, config, same_data)
    if learned is not None:
        codes, labels, path = learned
        expected = getattr(dataset, "labels", None)
        if len(codes) != len(dataset) or (
            expected is not None and not np.array_equal(np.asarray(expected), labels.numpy())
        ):
            raise FusnetError(
                f"{path}: its {len(codes)} database codes do not line up with the {len(dataset)} "
                "images of this training split (other data or order); pass --network-codes to "
                "encode them with the network"
            )
        source = f"read from {path}"
    else:
        codes, labels, speed = encode_dataset(model, dataset, device, args.batch_size,
                                              args.num_workers)
        source = f"{speed:.1f} img/s"
    atomic_savez(
        Path(args.output), bits=np.int64(codes.shape[1]), codes=pack_codes(codes), labels=labels.numpy(),
        paths=np.array([str(p) for p, _ in getattr(dataset, "samples", [])]),
    )
    sys.stdout.write(f"{len(codes)} codes of {codes.shape[1]} bits -> {args.output} ({source})\n")
    return 0


def _learned_database_codes(
    args: argparse.Namespace, config: RunConfig, same_data: bool
) -> tuple[torch.Tensor, torch.Tensor, Path] | None:
    """The run's evaluated database codes for ``encode --split train``, their labels and the
    file they come from, or None.

    ADSH, SEMICON and ExchNet retrieve from codes learned for the training images (V), not
    from the network's codes of them, so ``encode --split train`` of such a run gives the
    database it was evaluated with: the ``db_codes`` of the ``codes.npz`` beside the model
    (unless ``--network-codes`` asks for the network's codes of every image).
    """
    import torch

    from fusnet.eval.encoding import load_codes
    from fusnet.methods import LEARNED_DATABASE, method_class

    if (args.split != "train" or not same_data or args.network_codes
            or method_class(config.method).database != LEARNED_DATABASE):
        return None
    path = Path(args.model).parent / "codes.npz"
    if not path.is_file():
        raise FusnetError(
            f"{config.method} retrieves from its learned database codes V, kept in codes.npz "
            f"beside the model, but {path} is missing; pass --network-codes to encode the "
            "training images with the network instead"
        )
    logger.info("%s: the training split's codes are the evaluated database (learned V) from %s",
                config.method, path)
    saved = load_codes(path)
    return torch.as_tensor(saved["db_codes"]), torch.as_tensor(saved["db_labels"]), path


def add_encode_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``encode`` to the ``fusnet`` sub-command parsers."""
    enc = commands.add_parser("encode", help="images -> packed binary codes (.npz)")
    enc.add_argument("--model", required=True, help="a run's model.pt")
    enc.add_argument("--dataset", help="dataset name (default: the run's)")
    enc.add_argument("--root", help="dataset root (default: the run's)")
    enc.add_argument("--split", default="test", choices=["train", "test", "val", "fit"])
    enc.add_argument("--output", required=True, help="output .npz")
    enc.add_argument("--batch-size", type=positive_int, default=64)
    enc.add_argument("--num-workers", type=non_negative_int, default=0)
    enc.add_argument("--device", default="auto")
    enc.add_argument(
        "--network-codes", action="store_true",
        help="ADSH-style methods: encode --split train with the network instead of giving "
        "the evaluated database (learned V) from the run's codes.npz",
    )
    enc.set_defaults(func=cmd_encode)
