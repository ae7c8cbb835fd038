"""The train and test sets of a transfer run (``load_data``), read from the dataset the config names."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.utils.data import Dataset

from decur.data.build import band_stats
from decur.datasets import dataset_spec, resolve
from decur.evaluate.transfer.config import TransferConfig


@dataclass
class TransferData:
    """Train and test sets of a transfer run, with what the models need to know about them."""

    train: Dataset[dict[str, Tensor]]
    test: Dataset[dict[str, Tensor]]
    bands: dict[str, int]
    stats: dict[str, tuple[list[float], list[float]]]
    ignore_index: int | None
    num_classes: int
    crop_size: int
    raw: bool = False
    """The readers return stored values (S2 DN, S1 dB) rather than decur's preprocessed ones."""


def load_data(run: TransferConfig) -> TransferData:
    """The train and test sets of ``run`` (validated) from its dataset's ``transfer`` factory (``decur.datasets``).

    Only the modalities the run uses are read. Band statistics are the reader's published ones (``stats``), else
    computed on the training set; segmentation masks of a dataset with classes keep 0 as the ignored class. A
    dataset that declares no class count (synthetic) has its count read from the data.
    """
    spec = dataset_spec(run.dataset)
    assert spec.transfer is not None  # validate() refuses other datasets
    factory = resolve(spec.transfer)
    bands = run.dataset_bands()
    used = list(run.modalities or bands)  # read only the modalities the run uses (less I/O, nothing uncropped)
    bands = {m: c for m, c in bands.items() if m in used}
    train, test = factory(run, "train", used), factory(run, "test", used)
    stats = getattr(train, "stats", None) or band_stats(train, list(bands), samples=spec.stats_samples)
    if spec.classes is not None:
        ignore, classes = (0, spec.classes + 1) if spec.segmentation else (None, spec.classes)
    elif run.task == "classification":
        ignore, classes = None, int(train[0]["label"].numel())
    else:
        ignore, classes = None, max(2, 1 + max(int(test[i]["mask"].max()) for i in range(min(len(test), 64))))
    crop = spec.crop or run.image_size
    return TransferData(train, test, bands, stats, ignore, classes, crop, bool(getattr(train, "raw", False)))
