"""fusnet: Multi-FusNet fine-grained hashing for image retrieval."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``fusnet.load`` (``fusnet.export.load``), imported on first use: ``import fusnet`` stays light."""
    if name == "load":
        from fusnet.export import load

        return load
    raise AttributeError(f"module 'fusnet' has no attribute {name!r}")
