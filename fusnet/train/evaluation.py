"""Evaluating a run's network: validation mAP for model selection, test codes and metrics.

The database is the training split (``method.md`` section 6), encoded by the network (live
test-transform images in mode "full", the cached maps in modes "frozen" and "top"),
except that a method with learned database codes (ADSH's V) supplies the rows of the images
it fitted. Validation queries the held-out training images against the fit images; the
test split is used only for the final metrics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fusnet.config import RunConfig
from fusnet.eval.encoding import encode_dataset, retrieval_metrics, sign_codes
from fusnet.methods import HashingMethod
from fusnet.train.batches import RunData
from fusnet.train.features import CachedLevels

__all__ = ["RunEvaluator", "TestCodes"]

TestCodes = tuple[Tensor, Tensor, Tensor, Tensor]
"""(database codes, database labels, query codes, query labels)."""


@torch.no_grad()
def encode_cached(
    head: nn.Module,
    cached: CachedLevels,
    device: torch.device,
    batch_size: int = 256,
    index: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Codes and labels from cached level maps (frozen-backbone mode)."""
    head.eval()
    index = torch.arange(len(cached)) if index is None else index
    codes = []
    for start in range(0, len(index), batch_size):
        batch = index[start : start + batch_size]
        u = head(cached.batch(batch, device)).hash_logits  # (B, bits)
        codes.append(sign_codes(u.float()).cpu())
    return torch.cat(codes), cached.labels[index]


class RunEvaluator:
    """Encodes a run's splits with its network and scores retrieval.

    Args:
        config: the run.
        data: its datasets or caches.
        model: the whole network (mode "full" encodes images with it).
        method: the trained method (its learned database codes, if any).
        device: where to encode.
        cached_encoder: what encodes the cached maps (the head in mode "frozen", the top
            stages with the head in mode "top"); None in mode "full".
    """

    def __init__(self, config: RunConfig, data: RunData, model: nn.Module, method: HashingMethod,
                 device: torch.device, cached_encoder: nn.Module | None) -> None:
        self.config, self.data, self.model, self.method = config, data, model, method
        self.device, self.cached_encoder = device, cached_encoder

    def encode_split(self, split: str, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Codes and labels of "train"/"test" (optionally the rows ``index`` of the training split)."""
        data = self.data
        if self.cached_encoder is not None:
            cache = data.database_cache if split == "train" else data.query_cache
            return encode_cached(self.cached_encoder, cache, self.device, index=index)
        dataset = data.database_set if split == "train" else data.query_set
        if index is not None:
            dataset = torch.utils.data.Subset(dataset, index.tolist())
        codes, labels, _ = encode_dataset(
            self.model, dataset, self.device, self.config.data.eval_batch_size,
            self.config.data.num_workers, description=f"encoding {split}",
        )
        return codes, labels

    def database_codes(self, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Database codes of the training split (or the rows ``index`` of it).

        The network's codes, except that a method with learned database codes (ADSH's V)
        supplies the rows of the images it fitted; only the other rows are encoded.
        """
        learned = self.method.learned_database_codes()
        if learned is None:
            return self.encode_split("train", index)
        labels = self.data.train_labels
        rows = torch.arange(len(labels)) if index is None else index  # (R,) training-split rows
        position = torch.full((len(labels),), -1, dtype=torch.int64)  # fit position of each row
        position[self.data.fit_index] = torch.arange(len(self.data.fit_index))
        fit_position = position[rows]  # (R,)
        fitted = fit_position >= 0  # (R,)
        codes = torch.empty(len(rows), learned.shape[1])  # (R, bits)
        codes[fitted] = learned.cpu().float()[fit_position[fitted]]
        if not bool(fitted.all()):
            codes[~fitted] = self.encode_split("train", rows[~fitted])[0]
        return codes, labels[rows]

    def validation_map(self) -> float:
        """Validation mAP: held-out training images queried against the fit images."""
        val_codes, val_labels = self.encode_split("train", self.data.val_index)
        fit_codes, fit_labels = self.database_codes(self.data.fit_index)
        return float(retrieval_metrics(val_codes, fit_codes, val_labels, fit_labels)["map"])

    def test(self) -> tuple[dict[str, Any], TestCodes]:
        """Test metrics (queries: the test split; database: the training split) and the codes."""
        db_codes, db_labels = self.database_codes()
        query_codes, query_labels = self.encode_split("test")
        metrics = retrieval_metrics(query_codes, db_codes, query_labels, db_labels)
        return metrics, (db_codes, db_labels, query_codes, query_labels)
