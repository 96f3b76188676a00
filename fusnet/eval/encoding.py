"""Encoding images to codes, saving and loading codes, and the evaluation record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fusnet.errors import DataError
from fusnet.eval.metrics import evaluate_retrieval
from fusnet.eval.retrieval import pack_codes, unpack_codes
from fusnet.runtime import atomic_savez

PRECISION_KS: tuple[int, ...] = (1, 5, 10, 100)


def sign_codes(u: Tensor) -> Tensor:
    """{-1, +1} codes from real outputs; sign(0) = +1."""
    return torch.where(u >= 0, 1.0, -1.0)


@torch.no_grad()
def encode_dataset(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    description: str = "encoding",
) -> tuple[Tensor, Tensor, float]:
    """Codes (N, bits) in {-1,+1}, labels (N,) and images/s (data loading included)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    codes, labels = [], []
    start = time.perf_counter()
    for images, targets in tqdm(loader, desc=description, leave=False, disable=None):
        u = model(images.to(device)).hash_logits  # (B, bits)
        codes.append(sign_codes(u.float()).cpu())
        labels.append(torch.as_tensor(targets, dtype=torch.int64))
    seconds = time.perf_counter() - start
    count = sum(len(c) for c in codes)
    return torch.cat(codes), torch.cat(labels), count / max(seconds, 1e-9)


def retrieval_metrics(
    query_codes: Tensor, db_codes: Tensor, query_labels: Tensor, db_labels: Tensor
) -> dict[str, Any]:
    """mAP with deterministic (index) and tie-aware tie handling, plus precision@k."""
    ks = tuple(k for k in PRECISION_KS if k <= len(db_codes))
    return evaluate_retrieval(query_codes, db_codes, query_labels, db_labels, ks=ks)


def save_codes(
    path: Path,
    db_codes: Tensor,
    db_labels: Tensor,
    query_codes: Tensor,
    query_labels: Tensor,
) -> None:
    """Packed codes and labels in one ``.npz`` (bits stored alongside), written atomically."""
    atomic_savez(
        path,
        bits=np.int64(db_codes.shape[1]),
        db_codes=pack_codes(db_codes),
        db_labels=db_labels.numpy(),
        query_codes=pack_codes(query_codes),
        query_labels=query_labels.numpy(),
    )


CODES_KEYS: tuple[str, ...] = ("bits", "db_codes", "db_labels", "query_codes", "query_labels")


def load_codes(path: Path) -> dict[str, np.ndarray]:
    """Inverse of :func:`save_codes`: codes back in {-1, +1} float32.

    Raises:
        DataError: the file is missing, not an ``.npz`` of codes, truncated, or its
            arrays disagree; the message names the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"codes file {path} does not exist; pass a run's codes.npz (RUN/bits48/codes.npz) "
            "or make one with `fusnet encode`"
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise DataError(
            f"{path} is not an .npz archive ({'empty' if not magic else 'no zip header'}); pass "
            "a run's codes.npz, as `fusnet train` writes it, or make one with `fusnet encode`"
        )
    try:
        with np.load(path, allow_pickle=False) as payload:
            missing = [k for k in CODES_KEYS if k not in payload.files]
            if missing:
                raise DataError(
                    f"{path} is not a fusnet codes file: it lacks {missing} (it holds "
                    f"{sorted(payload.files)}); pass a run's codes.npz, as `fusnet train` writes it"
                )
            bits = int(payload["bits"])
            codes = {
                "bits": bits,
                "db_codes": unpack_codes(payload["db_codes"], bits),
                "db_labels": payload["db_labels"],
                "query_codes": unpack_codes(payload["query_codes"], bits),
                "query_labels": payload["query_labels"],
            }
    except DataError:
        raise
    except Exception as exc:  # numpy/zipfile raise many types on a foreign or cut file
        raise DataError(
            f"cannot read codes file {path} ({type(exc).__name__}: {exc}); it is not an .npz "
            "written by fusnet, or it was cut short: rerun the command that wrote it"
        ) from exc
    for side in ("db", "query"):
        if len(codes[f"{side}_codes"]) != len(codes[f"{side}_labels"]):
            raise DataError(
                f"{path}: {len(codes[f'{side}_codes'])} {side} codes but "
                f"{len(codes[f'{side}_labels'])} labels; the file is damaged, rerun the command "
                "that wrote it"
            )
    return codes
