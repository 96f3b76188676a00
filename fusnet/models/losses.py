"""Multi-task balanced loss (method.md section 4, paper Eqs. 12-16).

    L_hash = MSE(u, P[y])                                         # Eq. 16
    L_cls  = CE_smooth((logits(x) + logits(zoom(x))) / 2, y)      # Eq. 15
    L      = L_hash/α1² + L_cls/α2² + log(1+α1) + log(1+α2)       # Eq. 12

Label smoothing puts ``p = 0.9`` on the true class and ``(1-p)/(C-1)`` on each other
(the authors' ``smooth_CE``), not torch's ``label_smoothing=ε``, which spreads ε over all C
classes; the two agree when ``ε = C(1-p)/(C-1)``. All losses are computed in float32, so
they are safe under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusnet.errors import ConfigError

__all__ = [
    "MultiTaskLoss",
    "classification_loss",
    "hash_loss",
    "optimal_alpha",
    "smoothed_cross_entropy",
    "smoothed_targets",
]


def _check_true_prob(true_prob: float) -> None:
    if not 0.0 <= true_prob <= 1.0:
        raise ConfigError(f"true_prob must be in [0, 1], got {true_prob}")


def smoothed_targets(target: Tensor, num_classes: int, true_prob: float = 0.9) -> Tensor:
    """(B, C) float32 soft targets of (B,) class indices: ``true_prob`` on the true class,
    ``(1-true_prob)/(C-1)`` elsewhere.

    Raises:
        ConfigError: true_prob outside [0, 1].
        ValueError: fewer than two classes or a target that is not 1-D (targets outside
            [0, C) are left to scatter to reject, avoiding a device sync).
    """
    _check_true_prob(true_prob)
    if num_classes < 2:
        raise ValueError(f"label smoothing needs at least 2 classes, got {num_classes}")
    if target.dim() != 1:
        raise ValueError(f"target must be (B,), got shape {tuple(target.shape)}")
    off = (1.0 - true_prob) / (num_classes - 1)
    soft = torch.full((target.shape[0], num_classes), off, dtype=torch.float32,
                      device=target.device)  # (B, C)
    soft.scatter_(1, target[:, None], true_prob)  # (B, C)
    return soft


def smoothed_cross_entropy(logits: Tensor, target: Tensor, true_prob: float = 0.9) -> Tensor:
    """Scalar cross-entropy of (B, C) logits against :func:`smoothed_targets` of (B,)
    ``target``, averaged over the batch (the authors' ``smooth_CE``; equals
    ``F.cross_entropy(logits, target, label_smoothing=C(1-p)/(C-1))``)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )
    soft = smoothed_targets(target, logits.shape[1], true_prob)  # (B, C)
    log_p = F.log_softmax(logits.float(), dim=1)  # (B, C)
    return -(soft * log_p).sum(dim=1).mean()  # ()


def classification_loss(
    logits_plain: Tensor, logits_zoom: Tensor | None, target: Tensor, true_prob: float = 0.9
) -> Tensor:
    """Eq. 15: smoothed CE on the mean of the plain and zoomed views' (B, C) logits (the
    plain ones alone when the zoom view is off, ``logits_zoom`` None)."""
    if logits_zoom is None:
        return smoothed_cross_entropy(logits_plain, target, true_prob)
    if logits_zoom.shape != logits_plain.shape:
        raise ValueError(
            f"zoom logits {tuple(logits_zoom.shape)} differ from plain {tuple(logits_plain.shape)}"
        )
    mean_logits = 0.5 * (logits_plain.float() + logits_zoom.float())  # (B, C)
    return smoothed_cross_entropy(mean_logits, target, true_prob)


def hash_loss(u: Tensor, proxy_codes: Tensor, target: Tensor) -> Tensor:
    """Eq. 16 (right half): ``MSE(u, P[y])``, the mean over all B·k elements (as the
    authors' code, not summed over bits), of (B, k) hash outputs ``u`` against the (C, k)
    ±1 ``proxy_codes`` of the (B,) ``target`` classes."""
    if u.dim() != 2 or proxy_codes.dim() != 2 or u.shape[1] != proxy_codes.shape[1]:
        raise ValueError(
            f"u (B, k) and proxy_codes (C, k) must agree on k, got {tuple(u.shape)} "
            f"and {tuple(proxy_codes.shape)}"
        )
    if target.shape != u.shape[:1]:
        raise ValueError(f"target shape {tuple(target.shape)} does not match u {tuple(u.shape)}")
    goal = proxy_codes.to(device=u.device, dtype=torch.float32)[target]  # (B, k)
    return F.mse_loss(u.float(), goal)  # ()


class MultiTaskLoss(nn.Module):
    """Eq. 12: ``L = L_hash/α1² + L_cls/α2² + log(1+α1) + log(1+α2)``, α learnable.

    α1 and α2 start at ``init_alpha`` (paper 1) and are used raw, as in the authors' code.
    The formula is only a sensible objective for α > 0: below 0 both terms fall with α,
    so gradient descent drives α to -1 and the loss to -∞. ``alpha_min=None`` keeps the
    paper's formula (α = 0 gives inf, α <= -1 NaN, which the training loop catches);
    ``alpha_min = m > 0`` uses ``max(α, m)`` with a straight-through gradient: exact for
    α >= m, bounded below, and an α under m still gets the gradient at m (upwards when
    ``L > m³/(2(1+m))``), so it climbs back.
    """

    def __init__(self, init_alpha: float = 1.0, alpha_min: float | None = None) -> None:
        super().__init__()
        if alpha_min is not None and not alpha_min > 0:
            raise ConfigError(f"alpha_min must be > 0 or None, got {alpha_min}")
        if not init_alpha > (alpha_min if alpha_min is not None else 0.0):
            raise ConfigError(f"init_alpha must be > 0 and >= alpha_min, got {init_alpha}")
        self.alpha_min = alpha_min
        self.alpha1 = nn.Parameter(torch.tensor(float(init_alpha)))  # ()
        self.alpha2 = nn.Parameter(torch.tensor(float(init_alpha)))  # ()

    def _effective(self, alpha: Tensor) -> Tensor:
        if self.alpha_min is None:
            return alpha.float()  # ()
        a = alpha.float()  # ()
        return a + (a.clamp(min=self.alpha_min) - a).detach()  # () straight-through floor

    def forward(self, loss_hash: Tensor, loss_cls: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, parts)`` of the scalar task losses: the total (gradients into the
        losses and α) and detached scalars for logging (``loss``, ``loss_hash``,
        ``loss_cls``, ``weighted_hash``, ``weighted_cls``, ``reg``, ``alpha1``,
        ``alpha2``; call ``.item()`` only when logging, it syncs the device)."""
        a1 = self._effective(self.alpha1)  # ()
        a2 = self._effective(self.alpha2)  # ()
        weighted_hash = loss_hash.float() / a1.square()  # ()
        weighted_cls = loss_cls.float() / a2.square()  # ()
        reg = torch.log1p(a1) + torch.log1p(a2)  # ()
        total = weighted_hash + weighted_cls + reg  # ()
        parts = {
            "loss": total.detach(),
            "loss_hash": loss_hash.detach().float(),
            "loss_cls": loss_cls.detach().float(),
            "weighted_hash": weighted_hash.detach(),
            "weighted_cls": weighted_cls.detach(),
            "reg": reg.detach(),
            "alpha1": self.alpha1.detach().clone(),
            "alpha2": self.alpha2.detach().clone(),
        }
        return total, parts

    def extra_repr(self) -> str:
        return f"alpha_min={self.alpha_min}"


def optimal_alpha(task_loss: float) -> float:
    """The α > 0 minimising ``L/α² + log(1+α)`` for a fixed task loss L > 0: where the
    learnable weights should settle. Solves ``2L(1+α) = α³`` by bisection (L = 1: ~1.77)."""
    if not task_loss > 0:
        raise ValueError(f"task_loss must be > 0, got {task_loss}")
    lo, hi = 0.0, max(2.0, 2.0 * math.sqrt(2.0 * task_loss) + 2.0 * task_loss)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid**3 - 2.0 * task_loss * (1.0 + mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
