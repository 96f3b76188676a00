"""Run-time plumbing: devices, seeds, distributed processes, atomic files, provenance."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist

from fusnet.errors import ConfigError, OutputError
from fusnet.version import __version__

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA, then MPS, then CPU; under torchrun each rank takes its local GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device that supports it, or a
    CPU whose flags (/proc/cpuinfo) include ``avx512_bf16`` or ``amx_bf16`` (oneDNN then
    runs convolutions and matmuls in bf16; elsewhere torch emulates it, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = _cpuinfo() if device.type == "cpu" else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolved_precision(device: torch.device, requested: str,
                       setting: str = "optim.precision") -> dict[str, str]:
    """The precision ``setting`` (a training step's, or the feature caches'
    ``data.cache_precision``) runs in: ``{"requested", "used"}``, plus ``"note"`` when
    bfloat16 was asked for and the device lacks it (it then runs in float32, with a warning,
    and the run's manifest says so)."""
    if requested != "bfloat16" or native_bf16(device):
        return {"requested": requested, "used": requested}
    note = (f"{device.type} device without native bfloat16 (no avx512_bf16 / amx_bf16 on a "
            f"CPU): {setting} ran in float32")
    logger.warning("%s = 'bfloat16' asked for on a %s", setting, note)
    return {"requested": requested, "used": "float32", "note": note}


def autocast_context(device: torch.device, enabled: bool, precision: str = "float32"):
    """The autocast a training step runs under: bfloat16 when ``precision`` (as
    :func:`resolved_precision` resolved it) says so, else float16 on CUDA when
    ``enabled`` (AMP), else none (float32)."""
    if precision == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


def torch_memory_format(name: str) -> torch.memory_format:
    """The torch layout a ``DataConfig.cache_layout`` names ("contiguous", "channels_last")."""
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code reads the legacy global state
    torch.manual_seed(seed)


def device_description(device: torch.device) -> str:
    """The device as a manifest records it; on the CPU also the processor's model name and
    the vector width of PyTorch's kernels, which move a run's numbers slightly
    (``cpu:x86_64 AMD EPYC x2 threads=1 kernels=AVX2``)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        model = _cpu_model_name()
        return (f"cpu:{platform.processor() or platform.machine()}{' ' + model if model else ''} "
                f"x{os.cpu_count()} threads={torch.get_num_threads()} "
                f"kernels={torch.backends.cpu.get_cpu_capability()}")
    return str(device)


def _cpuinfo() -> str:
    """``/proc/cpuinfo`` (Linux), else ``""``."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model_name() -> str:
    """The processor's model name, else ``""``."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
             if line.startswith("model name")]
    return names[0] if names else ""


# --- distributed -------------------------------------------------------------


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the torchrun process group when launched by torchrun; return (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equally sized per-rank tensors along dim 0 (identity on one process)."""
    if not dist.is_initialized():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


# --- files ---------------------------------------------------------------------


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that a reader sees the old file or the whole new one, never a part.

    ``write`` fills a temporary file in the same folder, which is flushed to disk and
    renamed over ``path``; on any failure the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path: the file to (over)write.
        write: writes the content to the binary handle it is given.

    Raises:
        OutputError: the file could not be written (disk full, permissions); names it.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a result file is not
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(
            f"cannot write {path} ({exc.strerror or exc}); free disk space or choose a "
            "writable folder, then rerun (with --resume for a training run)"
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: Path, text: str) -> None:
    """Text (UTF-8) through :func:`atomic_write`."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_savez(path: Path, **arrays: Any) -> None:
    """``numpy.savez_compressed`` through :func:`atomic_write` (no ``.npz`` appended)."""
    atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


# --- provenance ------------------------------------------------------------------


GIT_COMMIT_ENV = "FUSNET_GIT_COMMIT"
OUTPUT_PATHSPEC = ":(exclude)results"
"""Left out of ``git_dirty``: ``results/`` holds what the project writes, not code. A
notebook that ``fusnet reproduce`` executes rewrites its executed copy there while its runs
train; that made every run a notebook trained say ``git_dirty: true``."""


def code_version(repo: Path | None = None) -> dict[str, Any]:
    """fusnet's version plus the git commit and whether the tree had local changes to
    tracked files outside ``results/`` (:data:`OUTPUT_PATHSPEC`).

    Without git (a copy of the tree with no ``.git``), the commit is taken from
    ``$FUSNET_GIT_COMMIT`` when set, recorded as such (``git_commit_from``), with
    ``git_dirty`` unknown (None).
    """
    repo = repo or Path(__file__).resolve().parents[1]  # this checkout
    info: dict[str, Any] = {"fusnet": __version__, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
             ".", OUTPUT_PATHSPEC],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout
        info.update(git_commit=commit, git_dirty=bool(status.strip()))
    except (OSError, subprocess.SubprocessError):
        given = os.environ.get(GIT_COMMIT_ENV)
        if given:  # a copy without .git (a lent GPU machine): the launcher names the commit
            info.update(git_commit=given, git_dirty=None, git_commit_from=GIT_COMMIT_ENV)
        else:
            logger.debug("git not available: code version without a commit")
    info["torch"] = torch.__version__
    return info


def fingerprint(items: list[Any]) -> str:
    """Short SHA-256 of a list of printable items (sample lists, labels)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(repr(item).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
