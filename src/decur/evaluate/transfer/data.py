"""The train and test sets of a transfer run (``load_data``), read from the dataset the config names."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.utils.data import Dataset

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
    """The datasets named by ``run`` (validated), band statistics, ignore index and class count."""
    from decur.data import BigEarthNetMM, BigEarthNetV2, GeoNRW, RGBDSegmentation
    from decur.data.bigearthnet import is_bigearthnet_v2
    from decur.data.build import band_stats
    from decur.data.synthetic import SyntheticMultimodal

    bands = run.dataset_bands()
    raw = run.task != "retrieval"  # raw trees give stored values (DN, dB); the input transform follows
    if run.dataset == "synthetic":
        third = "elevation" in bands
        train: Dataset = SyntheticMultimodal(run.train_samples, run.image_size, seed=10_000, elevation=third)
        test: Dataset = SyntheticMultimodal(run.test_samples, run.image_size, seed=20_000, elevation=third)
        if run.task == "classification":
            classes = int(train[0]["label"].numel())
        else:
            classes = max(2, 1 + max(int(test[i]["mask"].max()) for i in range(min(run.test_samples, 64))))
        return TransferData(train, test, bands, band_stats(train, list(bands)), None, classes, run.image_size)
    root = str(run.root)
    used = list(run.modalities or bands)  # read only the modalities the run uses (less I/O, nothing uncropped)
    bands = {m: c for m, c in bands.items() if m in used}
    if run.dataset == "bigearthnet":
        from decur.data.pack_bigearthnet import PackedBigEarthNet, is_packed_bigearthnet

        b10 = (run.s2_bands or 13) == 13  # 12-band (L2A) encoders read the stored bands, without the empty B10
        if is_packed_bigearthnet(root):  # `decur data pack --dataset bigearthnet[_v2]`
            p_tr = PackedBigEarthNet(root, run.train_split, used)
            p_te = PackedBigEarthNet(root, run.test_split, used)
            if "s2" in used and p_tr.insert_b10 != b10:
                from decur.config import ConfigError

                raise ConfigError(
                    f"transfer config field `s2_bands`: the packed store {root} holds {13 if p_tr.insert_b10 else 12} "
                    f"S2 bands, the run needs {12 + b10}: give the raw tree as root, or pack it again to match"
                )
            return TransferData(p_tr, p_te, bands, p_tr.stats, None, 19, 120)
        if is_bigearthnet_v2(root):  # the v2.0 (reBEN) release tree: metadata.parquet + BigEarthNet-S1/-S2
            v_tr = BigEarthNetV2(root, run.train_split, modalities=used, raw=raw, insert_b10=b10)
            v_te = BigEarthNetV2(root, run.test_split, modalities=used, raw=raw, insert_b10=b10)
            return TransferData(v_tr, v_te, bands, v_tr.stats, None, 19, 120, raw)
        tr = BigEarthNetMM(root, run.train_split, modalities=used, raw=raw, insert_b10=b10)
        te = BigEarthNetMM(root, run.test_split, modalities=used, raw=raw, insert_b10=b10)
        return TransferData(tr, te, bands, tr.stats, None, 19, 120, raw)
    if run.dataset == "geonrw":
        tr_c, te_c = (tuple(c) if c is not None else None for c in (run.train_cities, run.test_cities))
        g_tr = GeoNRW(root, "train", cities=tr_c, modalities=used)
        g_te = GeoNRW(root, "test", cities=te_c, modalities=used)
        return TransferData(g_tr, g_te, bands, band_stats(g_tr, list(bands)), 0, 11, 250)
    from decur.catalog import DATASETS as CATALOG

    classes = CATALOG[run.dataset].classes or 0
    r_tr = RGBDSegmentation(root, run.train_split, classes, modalities=used)
    r_te = RGBDSegmentation(root, run.test_split, classes, modalities=used)
    return TransferData(r_tr, r_te, bands, band_stats(r_tr, list(bands), samples=64), 0, classes + 1, 480)
