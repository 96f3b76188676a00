"""Multi-task balanced loss (method.md section 4, paper Eqs. 12-16).

    L_hash = MSE(u, P[y])                                         # Eq. 16
    L_cls  = CE_smooth((logits(x) + logits(zoom(x))) / 2, y)      # Eq. 15
    L      = L_hash/α1² + L_cls/α2² + log(1+α1) + log(1+α2)       # Eq. 12

Label smoothing puts ``p = 0.9`` on the true class and ``(1-p)/(C-1)`` on each
other class, as the authors' ``smooth_CE``. This is *not* torch's
``label_smoothing=ε`` convention, which spreads ε over all C classes (true class
``1-ε+ε/C``, others ``ε/C``): torch's ``label_smoothing=0.1`` puts ``0.9+0.1/C``
on the true class. The two agree when ``ε = C(1-p)/(C-1)``.

All losses are computed in float32 (logits and hash outputs are cast up), so they
are safe under autocast.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusnet.errors import ConfigError

logger = logging.getLogger(__name__)

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
    """Soft targets: ``true_prob`` on the true class, ``(1-true_prob)/(C-1)`` elsewhere.

    Args:
        target: class indices (B,), int64.
        num_classes: C >= 2.
        true_prob: mass on the true class.

    Returns:
        Rows summing to 1 (B, C), float32, on target's device.

    Raises:
        ConfigError: true_prob outside [0, 1].
        ValueError: fewer than two classes or a target that is not 1-D. (Targets
            outside [0, C) are not checked here, to avoid a device sync; scatter
            rejects them.)
    """
    _check_true_prob(true_prob)
    if num_classes < 2:
        raise ValueError(f"label smoothing needs at least 2 classes, got {num_classes}")
    if target.dim() != 1:
        raise ValueError(f"target must be (B,), got shape {tuple(target.shape)}")
    off = (1.0 - true_prob) / (num_classes - 1)
    soft = torch.full(
        (target.shape[0], num_classes), off, dtype=torch.float32, device=target.device
    )  # (B, C)
    soft.scatter_(1, target[:, None], true_prob)  # (B, C)
    return soft


def smoothed_cross_entropy(logits: Tensor, target: Tensor, true_prob: float = 0.9) -> Tensor:
    """Cross-entropy against :func:`smoothed_targets`, averaged over the batch.

    ``-(1/B) Σ_b Σ_c q_bc log softmax(logits_b)_c`` with ``q_b,y = true_prob`` and
    ``q_b,c = (1-true_prob)/(C-1)`` for ``c ≠ y`` (the authors' ``smooth_CE``).
    Equals ``F.cross_entropy(logits, target, label_smoothing=C(1-p)/(C-1))``.

    Args:
        logits: (B, C) unnormalised scores.
        target: (B,) class indices.
        true_prob: mass on the true class (paper 0.9).

    Returns:
        Scalar float32 loss.
    """
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
    logits_plain: Tensor,
    logits_zoom: Tensor | None,
    target: Tensor,
    true_prob: float = 0.9,
) -> Tensor:
    """Eq. 15: smoothed CE on the mean of the plain and zoomed views' logits.

    Args:
        logits_plain: (B, C) logits of the original images.
        logits_zoom: (B, C) logits of the zoomed images, or None when the zoom view
            is off (then the plain logits alone are used).
        target: (B,) class indices.
        true_prob: mass on the true class (paper 0.9).

    Returns:
        Scalar float32 loss.
    """
    if logits_zoom is None:
        return smoothed_cross_entropy(logits_plain, target, true_prob)
    if logits_zoom.shape != logits_plain.shape:
        raise ValueError(
            f"zoom logits {tuple(logits_zoom.shape)} differ from plain {tuple(logits_plain.shape)}"
        )
    mean_logits = 0.5 * (logits_plain.float() + logits_zoom.float())  # (B, C)
    return smoothed_cross_entropy(mean_logits, target, true_prob)


def hash_loss(u: Tensor, proxy_codes: Tensor, target: Tensor) -> Tensor:
    """Eq. 16 (right half): ``MSE(u, P[y])``, the mean over all B·k elements.

    This is ``F.mse_loss`` with its default ``reduction="mean"``, as in the authors'
    code: ``(1/(B k)) Σ_b Σ_j (u_bj - P_{y_b, j})²`` (not summed over bits).

    Args:
        u: (B, k) real-valued hash outputs (codes are ``sign(u)``).
        proxy_codes: (C, k) class proxy codes in {-1, +1}; moved to u's device.
        target: (B,) class indices.

    Returns:
        Scalar float32 loss.
    """
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

    α1 and α2 are scalar parameters initialised to ``init_alpha`` (paper 1), used
    raw as in the authors' code (so SGD sees the paper's parameterisation).

    Robustness. The formula is defined for α > -1, α ≠ 0, but it is only a
    sensible objective for α > 0: for -1 < α < 0 both ``L/α²`` and ``log(1+α)``
    decrease as α falls, so once an α crosses 0 gradient descent drives it to -1
    and the loss to -∞. With ``alpha_min=None`` (default) the formula is exact for
    every α > -1 and nothing is guarded: α = 0 gives inf and α <= -1 gives NaN,
    which the training loop's non-finite check catches. With ``alpha_min = m > 0``
    each α is replaced in the formula by ``max(α, m)`` with a straight-through
    gradient: the loss is exact for α >= m, always finite and bounded below, and
    an α that has fallen below m still receives the gradient at m (which points
    upwards whenever ``L > m³/(2(1+m))``), so it climbs back.

    Args:
        init_alpha: initial α1 = α2 (paper 1.0).
        alpha_min: optional floor m > 0 (see above); None keeps the paper's formula.
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
        """Combine the two task losses.

        Args:
            loss_hash: scalar L_hash.
            loss_cls: scalar L_cls.

        Returns:
            ``(total, parts)``: the scalar total (with gradients into the losses and
            into α1, α2) and a dict of detached scalar tensors for logging:
            ``loss``, ``loss_hash``, ``loss_cls``, ``weighted_hash`` (L_hash/α1²),
            ``weighted_cls`` (L_cls/α2²), ``reg`` (the two log terms), ``alpha1``,
            ``alpha2``. Call ``.item()`` only when logging (it syncs the device).
        """
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
    """The α > 0 minimising ``L/α² + log(1+α)`` for a fixed task loss L.

    Solves ``2L(1+α) = α³`` (the stationary point) by bisection; useful to check
    where the learnable weights should settle. For L = 1 this is about 1.77.

    Args:
        task_loss: L > 0.

    Returns:
        The minimiser α*.
    """
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
