"""Evaluation of pretrained encoders: transfer (classification, segmentation), probes, metrics, experiments.

Importing the package registers the config kinds of its commands (``transfer``, ``sweep``, ``experiment``,
``convergence``) and imports no torch; the metrics load on first use.
"""

from typing import Any

from decur.evaluate import studies as _studies  # noqa: F401  (registers the study configs)
from decur.evaluate.transfer import config as _transfer_config  # noqa: F401  (registers the transfer config)

__all__ = ["label_subset", "segmentation_scores"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from decur.evaluate import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
