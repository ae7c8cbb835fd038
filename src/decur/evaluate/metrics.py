"""Transfer metrics computed once over a whole evaluation set, and the seeded label subsets.

Segmentation scores come from accumulated confusion counts (``SegmentationScores``, a torchmetrics metric whose
counts are summed over processes under DDP), so batch size and sharding never change them. The mean IoU is taken
over the classes that occur in the ground truth or in the predictions of the evaluation set, as the common
segmentation toolkits (mmsegmentation, CMX) do: a class absent from both is not counted as a zero. The ignore index
is excluded from the mean and from the pixels.

Macro mAP (``macro_average_precision``) likewise averages over the classes that have at least one positive in
the evaluation set. Average precision is undefined for a class without positives (no recall to reach): sklearn's
``average_precision_score`` and torchmetrics' ``MultilabelAveragePrecision`` then return 0 for it with an "no positive
samples" warning, which pulls the macro mean down on every small test set (e.g. a 1 % split of BigEarthNet's rare
classes) although nothing was predicted wrongly. torchmetrics itself leaves classes whose AP is NaN out of its macro
mean; decur treats "no positive" the same way, and reports how many classes were averaged
(``map_macro_classes``) and the per-class AP (``ap_per_class``, ``None`` for a class without positives).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


def label_subset(n: int, fraction: float, seed: int) -> list[int]:
    """``round(fraction · n)`` (at least 1) distinct indices drawn without replacement with a seeded generator.

    The draw depends on ``(n, fraction, seed)`` only, so every method of a grid gets the same subset for a seed.

    Args:
        n: Size of the training set.
        fraction: Share of labelled samples, in (0, 1].
        seed: Generator seed.

    Returns:
        The chosen indices, sorted.

    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must lie in (0, 1], got {fraction}")
    k = min(n, max(1, round(fraction * n)))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:k].tolist())


def confusion_counts(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """``num_classes x num_classes`` int64 counts, rows = ground truth, columns = prediction.

    Pixels whose target is ``ignore_index`` (or outside ``[0, num_classes)``) are left out.
    """
    pred, target = pred.flatten().long(), target.flatten().long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    index = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(confusion: Tensor, ignore_index: int | None = None) -> dict[str, Any]:
    """mIoU, per-class IoU (``None`` for a class absent from ground truth and predictions) and pixel accuracy."""
    c = confusion.double()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    classes = [k for k in range(c.shape[0]) if k != ignore_index]
    present = [k for k in classes if union[k] > 0]
    iou = tp / union.clamp_min(1)
    total = c.sum()
    return {
        "miou": float(iou[present].mean()) if present else float("nan"),
        "iou_per_class": [float(iou[k]) if k in present else None for k in range(c.shape[0])],
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "classes_present": len(present),
    }


def segmentation_scores(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None
) -> dict[str, Any]:
    """Segmentation scores of predicted class maps against ground truth.

    Args:
        pred: Predicted classes, any shape (e.g. ``N x H x W``).
        target: Ground-truth classes, same shape.
        num_classes: Number of classes, the ignored one included when it is a class index.
        ignore_index: Ground-truth value to leave out (pixels and mean), or ``None``.

    Returns:
        ``{"miou", "iou_per_class", "pixel_accuracy", "classes_present"}``; the mean is over the classes present in
        the ground truth or the predictions.

    """
    return scores_from_confusion(confusion_counts(pred, target, num_classes, ignore_index), ignore_index)


class SegmentationScores(Metric):
    """Accumulates confusion counts over batches (and processes) and computes ``segmentation_scores``."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion: Tensor
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch of predicted and true class maps."""
        self.confusion += confusion_counts(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        """The scores of everything seen since the last reset."""
        return scores_from_confusion(self.confusion, self.ignore_index)


class PositiveCounts(Metric):
    """Positives per class of multi-hot targets, summed over batches and processes."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.counts: Tensor
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, target: Tensor) -> None:
        """Add one batch of ``N x C`` multi-hot targets."""
        self.counts += (target > 0).long().sum(0)

    def compute(self) -> Tensor:
        """Positives per class seen since the last reset."""
        return self.counts


def macro_average_precision(ap_per_class: Tensor, positives: Tensor) -> dict[str, Any]:
    """Macro mAP over the classes with at least one positive (module docstring: why).

    Args:
        ap_per_class: Average precision of every class (``C``), whatever a library returned for empty classes.
        positives: Positives per class in the evaluation set (``C``).

    Returns:
        ``{"map_macro", "map_macro_classes", "ap_per_class"}``; ``map_macro`` is NaN when no class has a positive.

    """
    present = positives > 0
    mean = float(ap_per_class[present].double().mean()) if bool(present.any()) else float("nan")
    per_class = [float(a) if p else None for a, p in zip(ap_per_class.tolist(), present.tolist(), strict=True)]
    return {"map_macro": mean, "map_macro_classes": int(present.sum()), "ap_per_class": per_class}


def predict_classes(scores: Tensor, ignore_index: int | None) -> Tensor:
    """Argmax over classes, never choosing ``ignore_index`` (it is not a class the model may predict)."""
    if ignore_index is not None and 0 <= ignore_index < scores.shape[1]:
        scores = scores.clone()
        scores[:, ignore_index] = float("-inf")
    return scores.argmax(1)


def alignment(z: dict[str, Tensor]) -> Any:
    """Per-dimension ``(1 − C_ii)^2`` of the first two modalities' embeddings over the given samples (Eq. 1).

    Returns:
        A ``K`` numpy array (float64).

    """
    a, b = (v.double() - v.double().mean(0) for v in list(z.values())[:2])
    c_ii = (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-12)
    return ((1 - c_ii) ** 2).numpy()
