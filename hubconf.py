"""torch.hub entry points: ``torch.hub.load(repo_dir, "multifusnet", source="local", path=...)``.

The model file is one written by ``fusnet export`` (weights, config, class names,
proxy codes and test transform in one file); see ``fusnet.serve.export``.
"""

from __future__ import annotations

dependencies = ["torch", "torchvision", "timm", "numpy", "PIL", "faiss"]


def multifusnet(path: str, device: str = "cpu"):
    """A trained fusnet model from an exported model file.

    Args:
        path: a file written by ``fusnet export RUN --output FILE``.
        device: "cpu", "cuda", "mps" or "auto".

    Returns:
        A ``fusnet.serve.export.Encoder``: ``encode(images)`` gives packed codes.
    """
    from fusnet.serve.export import load

    return load(path, device=device)
