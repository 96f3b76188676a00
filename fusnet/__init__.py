"""fusnet: Multi-FusNet fine-grained hashing for image retrieval."""

from __future__ import annotations

from typing import Any

from fusnet.version import __version__

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    """``fusnet.load`` (``fusnet.serve.export.load``), imported on first use: ``import fusnet`` stays light."""
    if name == "load":
        from fusnet.serve.export import load

        return load
    raise AttributeError(f"module 'fusnet' has no attribute {name!r}")
