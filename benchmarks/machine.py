"""What every benchmark prints first: the machine, the library versions, the load."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(faiss: bool = False) -> dict[str, object]:
    """CPU, cores, threads, versions and load average (and faiss's, when asked)."""
    info: dict[str, object] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }
    if faiss:
        try:
            import faiss as faiss_module

            info["faiss"] = faiss_module.__version__
            info["faiss_omp_threads"] = faiss_module.omp_get_max_threads()
        except ImportError:
            info["faiss"] = info["faiss_omp_threads"] = None
    return info
