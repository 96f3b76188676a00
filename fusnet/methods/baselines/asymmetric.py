"""The asymmetric deep supervised hashing machinery of ADSH, shared by SEMICON and ExchNet.

ADSH (Jiang & Li, AAAI 2018) learns a network F only for the query side and binary codes
V ∈ {−1, +1}^{N×k} directly for the database (the training images), alternating:

1. sample a query set Ω (|Ω| = m) of training images; for some epochs train F on Ω with ::

       L = Σ_{i∈Ω} Σ_{j∈Γ} (u_iᵀ v_j − k S_ij)² + γ Σ_{i∈Ω} (v_i − u_i)²,   u_i = tanh(F(x_i))

   (Γ: all N training images; S_ij = +1 for the same class, else −1);
2. with F fixed, update V by discrete cyclic coordinate descent (DCC), one bit at a time::

       Q = k Sᵀ U + γ Ū            (U: the outputs on Ω; Ū: U scattered to N rows, else 0)
       V_{·b} = sign(Q_{·b} − V_{·,−b} U_{·,−b}ᵀ U_{·b})     for b = 1 .. k

The database for retrieval is V itself (the learned codes of the training images); only the
queries are encoded by the network. Following the authors' PyTorch code (``jiangqy/ADSH-AAAI2018``,
``ADSH_pytorch``), the loss is divided by (N·B) for a batch of B, and the similarity is
"soft": dissimilar pairs target −n₊/n₋ (the ratio of similar to dissimilar pairs over Ω×Γ)
instead of −1 (``calc_sim``'s "soft constraint"; ADSH's ``soft_similarity=False`` gives the
paper's ±1). SEMICON's and ExchNet's code use the same loss, scaled by 12/k.

Mapping onto the shared training loop: one *outer iteration* is ``inner_epochs`` trainer
epochs over the same Ω (drawn, seeded, at its first epoch), and V is updated after its last
epoch (and after the run's last epoch). ``optim.epochs`` therefore counts inner epochs
(ADSH's code: 50 outer iterations × 3 epochs = 150), and ``eval_every`` is best set to
``inner_epochs`` (validation between two V-steps sees the V of the previous one; before the
first V-step, V is its initial value). Ω, the outputs on Ω, V and the similarity ratio are
buffers, so checkpoints resume exactly mid-iteration.

Simplifications (stated loudly):

- sign(0) = +1 in the DCC update (torch.sign would leave 0 entries in V);
- Ω's images are seen through the shared loop, which drops a last partial batch when the
  set is larger than a batch: an image of Ω may miss one of the inner epochs (its last
  output, or 0 at the start of the iteration as in the code, enters the V update);
- with a validation split (``select="val"``) V covers the fit images only; the held-out
  validation images, and the test-time database rows for them, use the network's codes
  (ADSH's out-of-sample extension for new database points).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor

from fusnet.config import RunConfig
from fusnet.methods.base import LEARNED_DATABASE, HashingMethod, HashOutput, gather_rows, sign_codes

logger = logging.getLogger(__name__)

__all__ = [
    "AsymmetricMethod", "asymmetric_loss", "asymmetric_similarity", "dcc_update",
    "similarity_transpose_times", "soft_ratio",
]


def soft_ratio(omega_labels: Tensor, fit_labels: Tensor) -> float:
    """n₊ / n₋: similar over dissimilar pairs of Ω×Γ (the code's soft-similarity ratio)."""
    counts = torch.bincount(fit_labels, minlength=int(fit_labels.max()) + 1)  # (C,)
    n_pos = float(counts[omega_labels].sum())
    n_all = float(omega_labels.numel() * fit_labels.numel())
    n_neg = n_all - n_pos
    return n_pos / max(n_neg, 1.0)


def asymmetric_similarity(labels: Tensor, fit_labels: Tensor, rho: float | None) -> Tensor:
    """S (B, N): +1 for the same class, else −rho (soft) or −1 (rho None)."""
    same = labels[:, None] == fit_labels[None, :]  # (B, N)
    negative = -1.0 if rho is None else -rho
    return torch.where(same, 1.0, negative).to(torch.float32)


def asymmetric_loss(
    u: Tensor, codes: Tensor, similarity: Tensor, batch_codes: Tensor, gamma: float,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """ADSH's loss of a batch, divided by (N·B) and multiplied by ``scale``.

    Args:
        u: (B, k) relaxed query codes tanh(F(x)) (with gradient).
        codes: (N, k) database codes V.
        similarity: (B, N) targets S.
        batch_codes: (B, k) the rows of V of the batch's own images.
        gamma: quantisation weight γ.
        scale: extra factor (ADSH 1; SEMICON and ExchNet code 12/k).

    Returns:
        ``(total, hash, quantisation)`` with total = hash + γ · quantisation.
    """
    n, b, k = codes.shape[0], u.shape[0], u.shape[1]
    u = u.float()
    residual = u @ codes.float().t() - k * similarity  # (B, N)
    hash_term = residual.pow(2).sum() / (n * b) * scale  # ()
    quantisation = (batch_codes.float() - u).pow(2).sum() / (n * b) * scale  # ()
    return hash_term + gamma * quantisation, hash_term, quantisation


def similarity_transpose_times(
    outputs: Tensor, omega_labels: Tensor, fit_labels: Tensor, rho: float | None,
    num_classes: int,
) -> Tensor:
    """Sᵀ U (N, k) for S (|Ω|, N) of :func:`asymmetric_similarity`, without forming S.

    (Sᵀ U)_j = Σ_{i: y_i = y_j} U_i − r Σ_{i: y_i ≠ y_j} U_i with r = rho (or 1), i.e.
    (1 + r) C[y_j] − r T for the class sums C and the total T of U over Ω.
    """
    r = 1.0 if rho is None else rho
    class_sums = torch.zeros(num_classes, outputs.shape[1], dtype=outputs.dtype, device=outputs.device)
    class_sums.index_add_(0, omega_labels, outputs)  # (C, k)
    total = outputs.sum(dim=0, keepdim=True)  # (1, k)
    return (1.0 + r) * class_sums[fit_labels] - r * total  # (N, k)


def dcc_update(codes: Tensor, outputs: Tensor, q: Tensor) -> Tensor:
    """One sweep of discrete cyclic coordinate descent over the bits, in place (ADSH's V-step).

    Minimises ‖U Vᵀ − k S‖² + γ ‖V_Ω − U‖² over V ∈ {−1, +1}^{N×k} one bit column at a time,
    later bits seeing the updated earlier ones, as in the authors' code.

    Args:
        codes: (N, k) V, updated in place and returned (then in {−1, +1}, sign(0) = +1).
        outputs: (m, k) U, the network outputs on Ω.
        q: (N, k) Q = k Sᵀ U + γ Ū.
    """
    k = codes.shape[1]
    for bit in range(k):
        rest = [j for j in range(k) if j != bit]
        u_bit = outputs[:, bit]  # (m,)
        v_rest, u_rest = codes[:, rest], outputs[:, rest]  # (N, k-1), (m, k-1)
        codes[:, bit] = sign_codes(q[:, bit] - v_rest @ (u_rest.t() @ u_bit))  # (N,)
    return codes


class AsymmetricMethod(HashingMethod):
    """ADSH-style training: Ω sampling, learned database codes V, DCC updates.

    The subclass's options hold ``gamma`` (γ), ``num_samples`` (|Ω| per outer iteration) and
    ``inner_epochs`` (trainer epochs between two V updates), and ADSH's also
    ``soft_similarity``; V, the outputs on Ω, Ω and ρ are buffers.

    Attributes:
        v_init: V at the start: "zeros" (ADSH's code) or "normal" (N(0, 1), seeded: the
            ``torch.randn`` of SEMICON's code, which ExchNet's reimplementation shares).
        scaled: whether the loss is scaled by 12/k (SEMICON's and ExchNet's code).
    """

    database = LEARNED_DATABASE
    v_init: ClassVar[str] = "zeros"
    scaled: ClassVar[bool] = False

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__(config, fit_labels, num_classes)
        self.gamma, self.inner_epochs = self.options.gamma, self.options.inner_epochs
        # The soft similarity (dissimilar target −n₊/n₋) instead of −1: an option of ADSH's
        # only; SEMICON's and ExchNet's code always use it.
        self.soft: bool = getattr(self.options, "soft_similarity", True)
        self.loss_scale = 12.0 / self.bits if self.scaled else 1.0
        n, k = self.num_fit, self.bits
        m = min(self.options.num_samples, n)
        if self.v_init == "zeros":  # ADSH's code: V = 0
            codes = torch.zeros(n, k)
        else:  # SEMICON's code: V ~ N(0, 1), seeded here
            generator = torch.Generator().manual_seed(self.config.seed * 7_919 + 101)
            codes = torch.randn(n, k, generator=generator)
        self.register_buffer("codes", codes)  # (N_fit, k) V
        self.register_buffer("outputs", torch.zeros(n, k))  # (N_fit, k) latest u (rows of Ω used)
        self.register_buffer("omega", torch.zeros(m, dtype=torch.int64))  # (m,) fit positions
        self.register_buffer("rho", torch.zeros((), dtype=torch.float64))  # soft ratio of Ω
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))  # V updates so far

    def derived(self) -> dict[str, Any]:
        return {"samples_per_outer_iteration": self.omega.numel(), "soft_similarity": self.soft,
                "loss_scale": self.loss_scale, "v_init": self.v_init}

    # --- Ω -----------------------------------------------------------------------------

    def on_epoch_start(self, epoch: int) -> None:
        if epoch % self.inner_epochs != 0:
            return  # same Ω for the whole outer iteration (restored from the checkpoint)
        outer = epoch // self.inner_epochs
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + 7_919 * outer + 17)
        omega = torch.randperm(self.num_fit, generator=generator)[: self.omega.numel()]  # (m,)
        self.omega.copy_(omega.to(self.omega.device))
        self.outputs.zero_()  # the code starts every outer iteration from U = 0
        ratio = soft_ratio(self.fit_labels[self.omega].cpu(), self.fit_labels.cpu())
        self.rho.fill_(ratio)
        logger.debug("%s outer iteration %d: |Omega| = %d", self.name, outer + 1, self.omega.numel())

    def epoch_subset(self) -> Tensor | None:
        return self.omega.cpu()

    def similarity(self, labels: Tensor) -> Tensor:
        return asymmetric_similarity(labels, self.fit_labels, float(self.rho) if self.soft else None)

    # --- loss ----------------------------------------------------------------------------

    def hash_loss(self, u: Tensor, labels: Tensor, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The asymmetric loss of a batch (and the update of the outputs on Ω)."""
        u = u.float()  # (B, k)
        values, rows = gather_rows(u.detach(), index)
        self.outputs[rows] = values
        total, hash_term, quantisation = asymmetric_loss(
            u, self.codes, self.similarity(labels), self.codes[index], self.gamma, self.loss_scale
        )
        return total, {"loss_hash": hash_term.detach(), "loss_quantisation": quantisation.detach()}

    def loss(
        self, out: HashOutput, labels: Tensor, index: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        total, parts = self.hash_loss(out.hash_logits, labels, index)
        parts["loss"] = total.detach()
        return total, parts

    # --- V ---------------------------------------------------------------------------------

    def on_epoch_end(self, epoch: int) -> None:
        last_of_outer = (epoch + 1) % self.inner_epochs == 0
        if last_of_outer or epoch + 1 == self.config.optim.epochs:
            self.update_codes()

    @torch.no_grad()
    def update_codes(self) -> None:
        """The DCC step: V from the outputs on Ω (identical on every rank)."""
        omega = self.omega
        outputs = self.outputs[omega].float()  # (m, k)
        rho = float(self.rho) if self.soft else None
        st_u = similarity_transpose_times(
            outputs, self.fit_labels[omega], self.fit_labels, rho, self.num_classes
        )  # (N, k)
        expanded = torch.zeros_like(self.codes)
        expanded[omega] = outputs  # (N, k) Ū
        q = self.bits * st_u + self.gamma * expanded  # (N, k)
        dcc_update(self.codes, outputs, q)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codes, src=0)
        self.updates += 1

    def learned_database_codes(self) -> Tensor | None:
        return sign_codes(self.codes.float())
