"""Offline feature compression: class proxy codes (method.md section 1, paper Eqs. 1-7).

FISH-style alternating optimisation with the label matrix ``T = I_C`` (one column
per class). With ``V`` the k x C latent class representation, ``Ul`` the C x k
decoder, ``R`` a k x k rotation and ``B`` the k x C binary codes, the
iteration minimises, block by block,

    J(Ul, V, R, B) = ||T - Ul V||² + δ ||B - R V||²

    V ~ N(0,1)^(k×C);  B = sign(N(0,1)^(k×C));  R = procrustes(B Vᵀ)
    repeat L times:
        B  = sign(R V)                                     # sign(0) = +1
        Ul = T Vᵀ (V Vᵀ)⁺
        V  = (Ulᵀ Ul + δ Rᵀ R)⁺ (Ulᵀ T + δ Rᵀ B)
        R  = procrustes(B Vᵀ)                              # B Vᵀ = U Σ Wᵀ -> R = U Wᵀ
    P = Bᵀ ∈ {-1, +1}^(C×k)

Each step minimises J over its block exactly, so J never increases (the tests check it;
the quantisation term alone is not monotone). Differences from the authors' code: their
``U @ W`` from ``torch.svd`` (which returns W, not Wᵀ) is not the Procrustes solution,
here ``R = U Wᵀ``; their codes come per image from the unseeded global RNG, here per
class from a local ``torch.Generator``, in float64 on the CPU (a seed gives the same
codes everywhere).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fusnet.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "FishResult",
    "class_proxy_codes",
    "code_diagnostics",
    "fish_proxy_codes",
    "procrustes",
    "sign_pm1",
]


def sign_pm1(x: Tensor) -> Tensor:
    """Sign with ``sign(0) = +1``, so every entry is exactly -1 or +1 (x's shape, dtype)."""
    one = torch.ones((), dtype=x.dtype, device=x.device)  # ()
    return torch.where(x >= 0, one, -one)  # x.shape


def procrustes(m: Tensor) -> Tensor:
    """Orthogonal Procrustes: the (k, k) rotation R maximising ``trace(Rᵀ M)`` of a (k, k)
    M, ``U Wᵀ`` for ``M = U Σ Wᵀ``; for ``M = B Vᵀ`` it minimises ``||B - R V||_F``."""
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"procrustes needs a square matrix, got shape {tuple(m.shape)}")
    u, _, wh = torch.linalg.svd(m)  # (k, k), (k,), (k, k); wh = Wᵀ
    return u @ wh  # (k, k)


@dataclass
class FishResult:
    """Output of :func:`fish_proxy_codes`.

    Attributes:
        codes: class proxy codes P (C, k), float32, entries -1/+1.
        history: one record per iteration, measured after its R step:
            ``fit`` = ||T - Ul V||², ``quantization`` = ||B - R V||²,
            ``objective`` = fit + δ·quantization, and ``bits_changed`` (entries
            of B that flipped in that iteration's B step).
        steps: J after every block update, in order (B, Ul, V, R per iteration,
            starting after the first Ul step, where J is first defined).
    """

    codes: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)


def _check_args(num_classes: int, bits: int, iterations: int, delta: float) -> None:
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if bits < 1:
        raise ConfigError(f"bits must be >= 1, got {bits}")
    if iterations < 0:
        raise ConfigError(f"proxy-code iterations must be >= 0, got {iterations}")
    if not delta > 0:
        raise ConfigError(f"proxy-code delta must be > 0, got {delta}")


def fish_proxy_codes(
    num_classes: int, bits: int, iterations: int = 15, seed: int = 0, delta: float = 1e-4
) -> FishResult:
    """Run the FISH class-code iteration and record the objective.

    Args:
        num_classes: C, number of classes.
        bits: k, code length.
        iterations: L, alternating-optimisation rounds (paper 15).
        seed: seed of the local generator (the global RNG is untouched).
        delta: δ, weight of the quantisation term (paper 1e-4).

    Raises:
        ConfigError: a non-positive size, negative iterations or δ <= 0.
    """
    _check_args(num_classes, bits, iterations, delta)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dt = torch.float64
    t = torch.eye(num_classes, dtype=dt)  # (C, C)
    v = torch.randn(bits, num_classes, generator=gen, dtype=dt)  # (k, C)
    b = sign_pm1(torch.randn(bits, num_classes, generator=gen, dtype=dt))  # (k, C)
    r = procrustes(b @ v.T)  # (k, k)

    def terms(ul: Tensor) -> tuple[float, float]:
        fit = torch.linalg.matrix_norm(t - ul @ v) ** 2  # ()
        quant = torch.linalg.matrix_norm(b - r @ v) ** 2  # ()
        return float(fit), float(quant)

    def objective(ul: Tensor) -> float:
        fit, quant = terms(ul)
        return fit + delta * quant

    result = FishResult(codes=torch.empty(0))
    ul: Tensor | None = None
    for it in range(iterations):
        b_new = sign_pm1(r @ v)  # (k, C)
        changed = int((b_new != b).sum())
        b = b_new
        if ul is not None:
            result.steps.append(objective(ul))
        ul = t @ v.T @ torch.linalg.pinv(v @ v.T, hermitian=True)  # (C, k)
        result.steps.append(objective(ul))
        lhs = ul.T @ ul + delta * (r.T @ r)  # (k, k)
        rhs = ul.T @ t + delta * (r.T @ b)  # (k, C)
        v = torch.linalg.pinv(lhs, hermitian=True) @ rhs  # (k, C)
        result.steps.append(objective(ul))
        r = procrustes(b @ v.T)  # (k, k)
        fit, quant = terms(ul)
        result.steps.append(fit + delta * quant)
        result.history.append({"iteration": float(it + 1), "fit": fit, "quantization": quant,
                               "objective": fit + delta * quant, "bits_changed": float(changed)})
    result.codes = b.T.contiguous().to(torch.float32)  # (C, k)
    return result


def class_proxy_codes(
    num_classes: int, bits: int, iterations: int = 15, seed: int = 0, delta: float = 1e-4
) -> Tensor:
    """Class proxy codes P ∈ {-1, +1}^(C×k) (method.md section 1): (C, k) float32 on the
    CPU, row c the regression target of every image of class c. Arguments and errors as
    :func:`fish_proxy_codes`."""
    result = fish_proxy_codes(num_classes, bits, iterations, seed, delta)
    diag = code_diagnostics(result.codes)
    logger.info("proxy codes C=%d k=%d seed=%d: Hamming min %.0f mean %.2f max %.0f, %d "
                "collisions, max |bit mean| %.3f", num_classes, bits, seed, diag["hamming_min"],
                diag["hamming_mean"], diag["hamming_max"], diag["collisions"],
                diag["bit_balance_max_abs"])
    if diag["collisions"]:
        logger.warning("%d pairs of classes share one proxy code (C=%d, k=%d)",
                       diag["collisions"], num_classes, bits)
    return result.codes


def code_diagnostics(codes: Tensor) -> dict[str, Any]:
    """Summarise a (C, k) ±1 code matrix in plain Python values.

    ``num_classes``, ``bits``; ``hamming_min``/``_mean``/``_max``/``_std`` over the pairs of
    distinct classes (NaN when C < 2); ``collisions`` (pairs with identical codes);
    ``unique_codes``; ``hamming_histogram`` (k+1 pair counts by distance); ``bit_mean``
    (k per-bit means, 0 = balanced) and ``bit_balance_max_abs``. ValueError unless
    ``codes`` is 2-D and holds only -1 and +1.
    """
    if codes.dim() != 2:
        raise ValueError(f"codes must be (C, k), got shape {tuple(codes.shape)}")
    c = codes.detach().to("cpu", torch.float64)  # (C, k)
    if not bool(((c == 1) | (c == -1)).all()):
        raise ValueError("codes must hold only -1 and +1")
    num_classes, bits = c.shape
    dist = 0.5 * (bits - c @ c.T)  # (C, C) Hamming distances
    iu = torch.triu_indices(num_classes, num_classes, offset=1)  # (2, P)
    pairs = dist[iu[0], iu[1]].round().long()  # (P,)
    bit_mean = c.mean(dim=0)  # (k,)
    out: dict[str, Any] = {
        "num_classes": num_classes,
        "bits": bits,
        "collisions": int((pairs == 0).sum()),
        "unique_codes": int(torch.unique(c, dim=0).shape[0]),
        "hamming_histogram": torch.bincount(pairs, minlength=bits + 1).tolist(),
        "bit_mean": bit_mean.tolist(),
        "bit_balance_max_abs": float(bit_mean.abs().max()),
    }
    if pairs.numel():
        pf = pairs.double()  # (P,)
        out.update(
            hamming_min=float(pf.min()),
            hamming_mean=float(pf.mean()),
            hamming_max=float(pf.max()),
            hamming_std=float(pf.std()) if pf.numel() > 1 else 0.0,
        )
    else:
        nan = float("nan")
        out.update(hamming_min=nan, hamming_mean=nan, hamming_max=nan, hamming_std=nan)
    return out
