"""The errors decur explains in one line: each names the file or field, the problem and the fix.

The command line prints them (and expected OS errors) as ``decur: error: …`` with a non-zero exit code; set
``DECUR_DEBUG=1`` or pass ``--debug`` to see the traceback instead.
"""

from __future__ import annotations


class DecurError(Exception):
    """Base of decur's own errors: bad config, bad data, a run folder that cannot be used."""


class RunError(DecurError, RuntimeError):
    """A run folder or checkpoint cannot be used (locked, unreadable, foreign, disk full); the message says why."""


class UnknownDatasetError(DecurError, KeyError):
    """A dataset name no spec is registered under (``decur.datasets``); the message lists the names and the fix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; training stopped before the optimiser step."""


class NonFiniteGradientError(FloatingPointError):
    """A gradient became NaN or Inf with a finite loss; training stopped before the optimiser step."""
