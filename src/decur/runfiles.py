"""Run-folder files that the training and the weights layers both read.

Where a run's checkpoint is, and the checkpoint itself, checked to be decur's before anything uses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from decur.errors import RunError


def checkpoint_path(run_or_ckpt: str | Path) -> Path:
    """``<run>/checkpoints/last.ckpt`` for a run folder, the path itself for a checkpoint file.

    Raises:
        RunError: There is no checkpoint at that path (the run has not finished an epoch, or it is no run).

    """
    path = Path(run_or_ckpt)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint here (give a decur run folder that has trained an epoch, or a .ckpt)")
    return path


def read_checkpoint(path: Path, purpose: str) -> dict[str, Any]:
    """A decur (Lightning) checkpoint, memory-mapped, checked to be one before anything uses it.

    Args:
        path: The ``.ckpt`` file.
        purpose: What it is read for, said in the error (``resume``, ``transfer``, ``export`` ...).

    Raises:
        RunError: The file is truncated, corrupt, not a checkpoint, or another program's checkpoint.

    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        if "weights_only" in str(err) or "Unpickl" in type(err).__name__:  # whole, but not what decur writes
            raise RunError(
                f"{path}: an intact file that holds Python objects other than tensors, which decur does not "
                f"unpickle for {purpose}; it was not written by decur (or by an older decur). Fix: point at a "
                "decur run folder or its checkpoints/last.ckpt; keep this file"
            ) from None
        raise RunError(
            f"{path}: cannot be read as a checkpoint for {purpose} ({type(err).__name__}: {reason}); it is truncated "
            "or corrupt. Fix: restore it, or delete it to start the run over"
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state or "pytorch-lightning_version" not in state:
        keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise RunError(
            f"{path}: not a decur checkpoint (found {keys}; expected the training state decur writes, with "
            "state_dict and pytorch-lightning_version). Fix: point at a decur run folder or its checkpoints/last.ckpt"
        )
    return state
