"""Multi-FusNet as a :class:`~fusnet.methods.base.HashingMethod`: the paper's model trained
through the same loop as the baselines.

What makes it Multi-FusNet lives here (``method.md`` sections 3-4):

- the zoom view (:class:`~fusnet.models.zoom.SaliencyZoom`): in mode "full" each batch is zoomed
  on its own top-level saliency; in modes "frozen" and "top" the zoomed inputs come from
  the caches (decided at caching time, so :meth:`build_zoom` also goes to the cache builder);
- the class proxy codes P (Eqs. 1-7), fixed for the run;
- the multi-task loss (Eq. 12) with the learned task weights α1, α2
  (:class:`~fusnet.models.losses.MultiTaskLoss`), the method's only training state;
- the database: the network's codes of the training images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fusnet.config import RunConfig
from fusnet.methods.base import MULTIFUSNET, Autocast, Batch, HashingMethod, LossAndParts
from fusnet.models.losses import MultiTaskLoss, classification_loss, hash_loss
from fusnet.models.multifusnet import MultiFusNet
from fusnet.models.proxy_codes import class_proxy_codes, code_diagnostics
from fusnet.models.zoom import SaliencyZoom, saliency_from_features

__all__ = ["MultiFusNetMethod"]


class MultiFusNetMethod(HashingMethod):
    """The paper's model, its zoom view, proxy codes and multi-task balanced loss."""

    name = MULTIFUSNET
    paper = "Multi-FusNet (the paper this repository reproduces)"

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__(config, fit_labels, num_classes)
        self.zoom = self.build_zoom(config)
        proxy = class_proxy_codes(
            num_classes, config.model.bits, config.loss.proxy_iterations, seed=config.loss.proxy_seed
        )  # (C, bits)
        self.proxy_diagnostics = code_diagnostics(proxy)
        self.register_buffer("proxy", proxy, persistent=False)  # (C, bits), fixed for the run
        self.loss_weights = MultiTaskLoss(alpha_min=config.loss.alpha_min)

    @classmethod
    def build_zoom(cls, config: RunConfig) -> SaliencyZoom | None:
        return SaliencyZoom() if config.loss.zoom else None

    @classmethod
    def build_backbone(cls, config: RunConfig) -> nn.Module:
        # As Multi-FusNet builds its own backbone (the same random draws when not pretrained).
        return MultiFusNet(config.model, num_classes=1).backbone

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> MultiFusNet:
        return MultiFusNet(config.model, num_classes, backbone=backbone)

    def batch_loss(self, net: nn.Module, batch: Batch, autocast: Autocast) -> LossAndParts:
        """Eqs. 12-16 on one batch, computed under ``autocast`` (as the paper's model always was)."""
        inputs, zoom_inputs, labels = batch.inputs, batch.zoom_inputs, batch.labels
        with autocast():
            out = net(inputs)
            zoom_logits = None
            if self.zoom is not None:
                if zoom_inputs is None:  # full mode: zoom the batch on its own saliency
                    saliency = saliency_from_features(out.levels[-1])  # (B, h, w), detached
                    zoom_inputs = self.zoom(inputs, saliency)  # (B, 3, H, W)
                # Second pass outside the DDP wrapper: gradients still reach the shared
                # parameters' hooks once per backward, so ranks stay in sync.
                plain = net.module if isinstance(net, DistributedDataParallel) else net
                zoom_logits = plain(zoom_inputs).class_logits  # (B, C)
            l_hash = hash_loss(out.hash_logits.float(), self.proxy, labels)
            l_cls = classification_loss(
                out.class_logits.float(),
                None if zoom_logits is None else zoom_logits.float(),
                labels,
                true_prob=self.config.loss.true_prob,
            )
            return self.loss_weights(l_hash, l_cls)

    def metrics_details(self) -> dict[str, Any] | None:
        """None: the run's config describes the paper's model (no ``method_details`` entry)."""
        return None

    # The checkpoint's ``criterion`` entry holds the task weights alone (alpha1, alpha2), the
    # layout of checkpoints written before Multi-FusNet became a method.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.loss_weights.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        return self.loss_weights.load_state_dict(state_dict, strict=strict, assign=assign)
