"""Input handling of :mod:`fusnet.eval.metrics`: codes and labels checked and converted.

Codes become (n, bits) float32 tensors of +-1, labels either class ids or multi-hot
rows (:func:`_prepare_labels`); :func:`_safe_div` is the 0-where-undefined division
every ratio of the metrics uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _as_codes(codes: ArrayLike, name: str) -> Tensor:
    """(n, bits) float32 tensor of +-1 codes, validated."""
    t = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes)
    t = t.detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, bits), got {tuple(t.shape)}")
    t = t.to(torch.float32)
    if t.numel() and not bool(((t == 1) | (t == -1)).all()):
        raise ValueError(
            f"{name} must hold only -1 and +1 (binarise with torch.where(u >= 0, 1.0, -1.0))"
        )
    return t.contiguous()


def _as_labels(labels: ArrayLike, n: int, name: str) -> Tensor:
    """(n,) class ids or (n, C) multi-hot labels as a CPU tensor, validated."""
    t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    t = t.detach().cpu()
    if t.ndim not in (1, 2) or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, C), got {tuple(t.shape)}")
    if t.ndim == 1 and (t.is_floating_point() or t.is_complex()):
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name}: class ids must be integers")
    return t


def _prepare_labels(
    query_labels: ArrayLike, db_labels: ArrayLike, nq: int, n: int
) -> tuple[str, Tensor, Tensor]:
    """("class", (nq,), (N,)) int64 class ids, or ("multi", (nq, C), (N, C)) float32."""
    ql = _as_labels(query_labels, nq, "query_labels")
    dl = _as_labels(db_labels, n, "db_labels")
    if ql.ndim != dl.ndim:
        raise ValueError(
            "query_labels and db_labels must be of the same kind (both class ids or both "
            f"multi-hot), got shapes {tuple(ql.shape)} and {tuple(dl.shape)}"
        )
    if ql.ndim == 2:
        if ql.shape[1] != dl.shape[1]:
            raise ValueError(
                f"multi-hot label widths differ: {ql.shape[1]} (queries) vs {dl.shape[1]} (database)"
            )
        qm, dm = (ql != 0), (dl != 0)
        if bool((qm.sum(1) == 1).all()) and bool((dm.sum(1) == 1).all()):
            return "class", qm.to(torch.int8).argmax(1), dm.to(torch.int8).argmax(1)
        return "multi", qm.to(torch.float32), dm.to(torch.float32)
    return "class", ql.to(torch.int64), dl.to(torch.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, 0 where ``den`` is 0 (``den`` broadcast to ``num``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out
