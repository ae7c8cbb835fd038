"""Which input transform a set of weights gets, and what is left of it once a dataset reader has run.

The default is the transform the weights were trained with: the one recorded in a decur run or card; for the
release's and torchgeo's Sentinel weights (2 or 12/13 bands, no card) the release's ``ssl4eo_release``. A rule
given by the user (``input_transform: decur | ssl4eo_release | torchgeo``) replaces it: ``decur`` keeps the
statistics a decur run or card recorded, and uses SSL4EO-S12's (Sentinel) or the dataset's (RGB, HHA, DEM) for
other weights.
"""

from __future__ import annotations

from decur.data.transforms import RULES, InputTransform, image_transform, sentinel_transform
from decur.weights.formats import Pretrained, WeightsError

SENTINEL_BANDS = (2, 12, 13)
READER_STEPS = ({"op": "s2_8bit"}, {"op": "cut_outliers", "fraction": 0.02})
"""The first steps of decur's Sentinel transform, which decur's packed stores and synthetic data already hold."""


def default_transforms(
    pre: Pretrained,
    rule: str | None,
    where: str,
    stats: dict[str, tuple[list[float], list[float]]] | None = None,
    imagenet: bool = False,
) -> dict[str, InputTransform]:
    """Modality → the input transform for ``pre`` under ``rule`` (``None``: as trained).

    Args:
        pre: The weights.
        rule: One of ``decur.data.transforms.RULES``, or ``None``.
        where: Who asks (``transfer config field `input_transform``` ...), for messages.
        stats: The dataset's band statistics (decur's rule on weights without recorded statistics).
        imagenet: The release's RGB-D loaders (SUN-RGBD, NYUv2) standardise with ImageNet statistics.

    Raises:
        WeightsError: An unknown rule, or no recorded transform and none can be derived.

    """
    if rule is not None and rule not in RULES:
        raise WeightsError(f"{where}: input transform {rule!r} is not one of {list(RULES)}")
    out = {}
    for m, bands in pre.bands.items():
        recorded = pre.transforms.get(m)
        if recorded is not None and rule in (None, recorded.rule):
            out[m] = recorded
            continue
        chosen = rule or ("ssl4eo_release" if bands in SENTINEL_BANDS else None)
        if chosen is None:
            raise WeightsError(
                f"{pre.source}: no input transform is recorded for {m!r} ({bands} bands); set "
                f"{where} to one of {list(RULES)}"
            )
        try:
            if bands in SENTINEL_BANDS and m not in ("rgb", "hha", "dem"):
                out[m] = sentinel_transform(chosen, m, bands)
            else:
                base = stats.get(m) if stats else None
                if chosen == "decur" and base is None:
                    raise ValueError(f"decur's transform of {m!r} needs band statistics; none are recorded")
                out[m] = image_transform(chosen, m, bands, base or ([0.0] * bands, [1.0] * bands), imagenet)
        except ValueError as err:
            raise WeightsError(f"{where}: {err}") from None
    return out


def after_reader(transform: InputTransform, modality: str, raw: bool, where: str) -> InputTransform:
    """What is left of ``transform`` for a reader that returns raw values (``raw``) or decur's units.

    decur's packed BigEarthNet store and the synthetic data hold values after decur's first Sentinel step; only the
    ``decur`` rule can continue from there.

    Raises:
        WeightsError: A DN / dB transform of another rule on data that are not raw.

    """
    if raw:
        return transform
    first = transform.steps[:1]
    if first and first[0] in READER_STEPS:
        return transform.after(first)
    if transform.units in ("DN", "dB") and transform.rule != "decur":
        raise WeightsError(
            f"{where}: the {transform.rule} transform of {modality!r} starts from {transform.units}, "
            "but these data hold decur's preprocessed values (a packed store or synthetic data); "
            "use the raw release tree, or input_transform: decur"
        )
    return transform
