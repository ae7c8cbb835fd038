"""Process-wide settings that make training steps cheaper on the host: cuDNN autotuning, glibc's allocator."""

from __future__ import annotations

import ctypes
import functools

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (4 x 1 MiB x sizeof(long))
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def tune_host() -> None:
    """Turn on cuDNN benchmark mode (fixed input shapes) and ``keep_freed_memory``; idempotent."""
    torch.backends.cudnn.benchmark = True
    keep_freed_memory()


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of handing it back to the kernel after every step.

    glibc serves large allocations with fresh ``mmap`` pages and unmaps them on ``free`` (above a threshold that
    starts at 128 KiB), so every step's batch-sized tensors — images, views, activations, about 20 MB each in the
    default config — are page-faulted and zeroed by the kernel again. Raising the mmap threshold to glibc's
    maximum (32 MiB) and the trim threshold keeps freed blocks in the heap for the next step (what it gains:
    ``benchmarks/results/README.md``). The process keeps its peak heap instead of shrinking between steps.

    Returns:
        Whether the settings were applied (``False`` off glibc, e.g. on macOS or musl).

    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the symbols already loaded into this process, libc's among them
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
