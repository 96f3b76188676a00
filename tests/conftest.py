"""Shared test fixtures.

The real photos live in ``../shared/data`` beside the repository (read-only in
CI). ``FUSNET_SHARED_DATA`` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FUSNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Two cores on the reference machine: keep intra-op threads modest and results repeatable.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real-photo datasets (``cub100/``, ``flowers17/``)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(
            f"real test data not found at {SHARED_DATA}; check out ../shared beside the repo "
            "or set FUSNET_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def cub100_root(shared_data: Path) -> Path:
    return shared_data / "cub100"


@pytest.fixture(scope="session")
def flowers17_root(shared_data: Path) -> Path:
    return shared_data / "flowers17"


@pytest.fixture(scope="session")
def nabirds33_root() -> Path:
    """The 33-class NABirds subset, the folder holding ``nabirds/`` (what the cpu recipe
    names); skipped where the shared data lacks it (present in CI)."""
    root = SHARED_DATA / "nabirds33"
    if not (root / "nabirds").is_dir():
        pytest.skip(f"NABirds-33 subset not found at {root}; check out ../shared beside the "
                    "repo or set FUSNET_SHARED_DATA")
    return root


def interrupt_in_epoch(config, monkeypatch=None, epoch: int = 1) -> None:
    """Train ``config`` until a KeyboardInterrupt at the start of ``epoch`` (0-based),
    as a user's Ctrl-C would, leaving its checkpoints for ``train(config, resume=True)``.

    Uses the trainer's public ``before_epoch`` hook (``monkeypatch`` is unused, kept for
    the callers' signature)."""
    from fusnet.train.loop import Trainer

    def stop(trainer, current):
        if current == epoch:
            raise KeyboardInterrupt

    trainer = Trainer(config)
    trainer.before_epoch.append(stop)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
