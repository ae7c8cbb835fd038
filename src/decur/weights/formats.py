"""Every published layout of DeCUR weights, read into one form: per-modality plain encoder state dicts.

Accepted (``read_pretrained``; all read with ``torch.load(weights_only=True)``, nothing else is unpickled):

===========================  ==========================================================================  ===========
kind                         what it is                                                                   transform
===========================  ==========================================================================  ===========
``decur-run``                a decur run folder or its ``.ckpt``                                          decur
``decur-export``             ``decur export`` / ``decur import`` output (folder with ``card.json``, or    the card's
                             one ``.safetensors`` with its ``.json`` card)
``release-joint``            the DeCUR release's training checkpoint ``{'epoch', 'model', 'optimizer'}``  release
                             or its bare ``module.``-prefixed dict: ``module.backbone_1.`` (S1 / RGB),
                             ``module.backbone_2.`` (S2 / DEM / HHA), projectors ``module.projector1/2``
``plain``                    one backbone: the release's "backbone only" files, torchgeo's                release
                             ``ResNet50_Weights.SENTINEL*_ALL_DECUR`` (timm / torchvision ResNet keys;      (2 / 13
                             ``fc.*`` dropped), a timm ViT (``head.*`` dropped), a SegFormer MiT          bands)
===========================  ==========================================================================  ===========

The architecture is read from the keys (ResNet depth from its block counts, MiT size from its stage depths, ViT
width / patch size from ``patch_embed.proj``); the band count from the first layer.

Modalities of a joint file: ``backbone_1`` → the first, ``backbone_2`` → the second of ``modalities`` (the transfer
run's ``pretrained_modalities``, else the dataset's modalities in their order, which is the release's: s1, s2 /
rgb, dem / rgb, hha). A one-backbone file takes ``modalities[0]`` when given, else the dataset's only modality
with its band count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decur.data.transforms import InputTransform
from decur.errors import DecurError
from decur.models import create_encoder

CARD = "card.json"
"""The card of an export folder (``decur.weights.export``)."""
RESNET_DEPTHS: dict[tuple[bool, tuple[int, ...]], str] = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}
"""(bottleneck blocks, blocks per stage) → timm / torchvision ResNet."""
MIT_DEPTHS: dict[tuple[int, ...], str] = {
    (3, 4, 6, 3): "mit_b2",
    (3, 4, 18, 3): "mit_b3",
    (3, 8, 27, 3): "mit_b4",
    (3, 6, 40, 3): "mit_b5",
}
VIT_WIDTHS = {192: "tiny", 384: "small", 768: "base", 1024: "large"}
SENSOR_BANDS: dict[str, tuple[int, ...]] = {"s1": (2,), "s2": (12, 13), "rgb": (3,), "hha": (3,), "dem": (1,)}
"""Band counts of the modality names decur's datasets use (a joint file's names are checked against them)."""
RELEASE_COMMON = {2: 7168, 3: 6144}
"""The release scripts' ``--dim_common`` by the first backbone's band count: SSL4EO-S12 (S1 first) 7168 of 8192,
GeoNRW / SUN-RGBD (RGB first) 6144."""


class WeightsError(DecurError):
    """A weights file decur cannot read or place (the message names the file and what was expected)."""


@dataclass
class Pretrained:
    """Weights of one or more modality encoders, whatever file they came from.

    Attributes:
        source: The file or folder read.
        kind: ``decur-run``, ``decur-export``, ``release-joint`` or ``plain`` (module docstring).
        arch: Encoder architecture (timm name or ``mit_bX``).
        encoders: Modality → plain encoder state dict (timm keys; SegFormer keys for MiT).
        bands: Modality → input band count.
        transforms: Modality → the input transform the weights were trained with, when recorded.
        projectors: Modality → projector state dict (decur's ``decur.models.projector`` layout), when present.
        head_dim: Width of the linear head before the projector (the release's MiT: 2048), else ``None``.
        common_dim: Common embedding dimensions, when known.
        card: Everything else a card or run recorded (method, epoch, config hash, ...).

    """

    source: Path
    kind: str
    arch: str
    encoders: dict[str, dict[str, Tensor]]
    bands: dict[str, int]
    transforms: dict[str, InputTransform] = field(default_factory=dict)
    projectors: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    head_dim: int | None = None
    common_dim: int | None = None
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        """Modality names, in order."""
        return list(self.encoders)

    @property
    def vit_pool(self) -> str:
        """A plain ViT's pooled feature (``model.vit_pool`` of the run, ``vit_pool`` of a card; else ``token``)."""
        return str(self.card.get("vit_pool", "token"))

    def encoder(self, modality: str) -> nn.Module:
        """A fresh encoder of ``modality`` holding these weights (loaded with strict key matching).

        Raises:
            WeightsError: No such modality, or weights that do not fit the architecture.

        """
        if modality not in self.encoders:
            raise WeightsError(f"{self.source}: has no encoder {modality!r}; it has {self.modalities}")
        encoder = create_encoder(self.arch, self.bands[modality], self.vit_pool)
        try:
            encoder.load_state_dict(self.encoders[modality], strict=True)
        except RuntimeError as err:
            reason = " ".join(line.strip() for line in str(err).splitlines()[:2])[:200]  # 2nd line: the keys
            raise WeightsError(
                f"{self.source}: the {modality} weights do not fit {self.arch} with "
                f"{self.bands[modality]} bands ({reason})"
            ) from None
        return encoder


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (recorded in import cards)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load(path: Path) -> Any:
    """``_load_file`` of ``path``, read once while the file is unchanged.

    Transfer validates the weights before any data are read and builds the encoders from them afterwards; a
    release checkpoint is about 1 GB.
    """
    stat = path.stat()
    return _load_file(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _load_file(name: str, mtime_ns: int, size: int) -> Any:
    """``torch.load`` with ``weights_only=True`` (memory-mapped when the file allows), or a one-line error.

    The result is shared by the callers of ``_load``: it is read, never modified.
    """
    path = Path(name)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({str(err)[:120]})") from None
    for mmap in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if mmap and "mmap" in str(err):
                continue  # a legacy (non-zip) file: read it whole
            reason = str(err).splitlines()[0][:160]
            raise WeightsError(
                f"{path}: cannot be read as a PyTorch weights file ({reason}); it is truncated, "
                "corrupt or not a weights file"
            ) from None
        except Exception as err:
            first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            if "weights_only" in str(err) or "Unpickl" in type(err).__name__:
                first = "it holds Python objects other than tensors, which decur does not unpickle"
            raise WeightsError(
                f"{path}: cannot be read as a weights file ({first}); give a state dict, the DeCUR "
                "release's checkpoint, a decur export or a decur run"
            ) from None
    raise AssertionError("unreachable")


def strip_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix``, with it removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def infer_arch(state: dict[str, Tensor], where: Path) -> tuple[str, int]:
    """Architecture and input band count of a plain encoder state dict.

    Raises:
        WeightsError: The keys are those of no ResNet, MiT or ViT.

    """
    if "conv1.weight" in state and "layer4.0.conv1.weight" in state:
        depths = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
        arch = RESNET_DEPTHS.get(("layer1.0.conv3.weight" in state, depths))
        if arch is None:
            raise WeightsError(f"{where}: a ResNet with blocks {depths} per stage, which decur does not know")
        return arch, int(state["conv1.weight"].shape[1])
    if "patch_embed1.proj.weight" in state:
        depths = tuple(len({k.split(".")[1] for k in state if k.startswith(f"block{i}.")}) for i in range(1, 5))
        width = int(state["patch_embed1.proj.weight"].shape[0])
        arch = ("mit_b0" if width == 32 else "mit_b1") if depths == (2, 2, 2, 2) else MIT_DEPTHS.get(depths)
        if arch is None:
            raise WeightsError(f"{where}: a MiT with stage depths {depths}, which is none of mit_b0..mit_b5")
        return arch, int(state["patch_embed1.proj.weight"].shape[1])
    if "patch_embed.proj.weight" in state and "cls_token" in state:
        w = state["patch_embed.proj.weight"]
        size = VIT_WIDTHS.get(int(w.shape[0]))
        if size is None:
            raise WeightsError(f"{where}: a ViT of width {w.shape[0]}; decur knows widths {sorted(VIT_WIDTHS)}")
        return f"vit_{size}_patch{int(w.shape[-1])}_224", int(w.shape[1])
    raise WeightsError(
        f"{where}: the keys ({sorted(state)[:4]} ...) are those of no ResNet, MiT or ViT encoder; "
        "give a backbone state dict, the DeCUR release's checkpoint or a decur export"
    )


def _clean_backbone(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop classifier heads (``fc.`` ResNet, ``head.`` ViT / MiT)."""
    return {k: v for k, v in state.items() if not k.startswith(("fc.", "head."))}


def read_pretrained(
    source: str | Path,
    modalities: list[str] | None = None,
    dataset_bands: dict[str, int] | None = None,
    field: str = "pretrained_modalities",
    single: str | None = None,
) -> Pretrained:
    """The encoders in ``source``, whichever layout (module docstring), validated and named by modality.

    A joint file's two encoders are named by ``modalities``, else by the dataset's modalities; when the dataset lists
    them in the other order and the band counts tell them apart (2 and 13), by band count (recorded in the card as
    ``modalities_from``). Names decur knows (``s1``, ``s2``, ``rgb``, ``hha``, ``dem``) must fit the band counts.

    Args:
        source: File or folder.
        modalities: Names for the encoders in file order.
        dataset_bands: The target dataset's modalities and band counts, in order (names joint files and plain
            files when ``modalities`` is not given).
        field: How the caller's user names ``modalities`` (``pretrained_modalities``, ``--modalities`` ...), for
            messages.
        single: The name of a one-encoder file's encoder when neither ``modalities`` nor the dataset names it.

    Raises:
        WeightsError: Unreadable, unknown layout, or encoders that cannot be named (the message says what to set).

    """
    path = Path(source)
    if not path.exists() and _is_name(str(source)):  # weights by name: the release's, torchgeo's, hf:...
        from decur.weights.hub import resolve  # (hub and export build on this module)

        path, named = resolve(str(source))
        modalities = modalities or (named if named and len(named) > 1 else None)
        if named and len(named) == 1 and not modalities and not dataset_bands:
            modalities = named
    if not path.exists():
        raise WeightsError(
            f"{path}: does not exist; give a decur run folder, a decur export, the DeCUR release's "
            "checkpoint or a backbone state dict"
        )
    if path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        from decur.weights.hub import read_hub  # (hub builds on this module)

        return _rename(read_hub(path), modalities, field)
    if (
        (path.is_dir() and (path / CARD).is_file())
        or path.suffix == ".json"
        or (path.suffix == ".safetensors" and path.with_suffix(".json").is_file())
    ):
        from decur.weights.export import read_export  # (export builds on this module)

        return _rename(read_export(path), modalities, field)
    if path.is_dir() or path.suffix == ".ckpt":
        from decur.weights.export import read_run  # (export builds on this module)

        return _rename(read_run(path), modalities, field)
    state = _load(path)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if "state_dict" in state and "pytorch-lightning_version" in state:
        from decur.weights.export import read_run  # (export builds on this module)

        return _rename(read_run(path), modalities, field)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # the release's training checkpoint {'epoch', 'model', 'optimizer'}
    elif "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(f"{path}: entries {bad[:3]} are not tensors; not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith(("da1_l", "da2_l")) for k in state):
        raise WeightsError(
            f"{path}: a DeCUR RDA checkpoint (deformable attention modules da*_l3/l4); decur "
            "loads plain ResNet, MiT and ViT encoders only"
        )
    if any(k.startswith("backbone_1.") for k in state):
        return _read_joint(path, state, modalities, dataset_bands, field)
    state = _clean_backbone({k.removeprefix("backbone."): v for k, v in state.items()})
    arch, bands = infer_arch(state, path)
    name = _single_name(path, bands, modalities, dataset_bands, field, single)
    return Pretrained(path, "plain", arch, {name: state}, {name: bands})


def _read_joint(
    path: Path,
    state: dict[str, Tensor],
    modalities: list[str] | None,
    dataset_bands: dict[str, int] | None,
    field: str,
) -> Pretrained:
    encoders = {i: strip_prefix(state, f"backbone_{i}.") for i in (1, 2)}
    if not encoders[2]:
        raise WeightsError(f"{path}: has backbone_1 but no backbone_2 keys; not a complete DeCUR joint checkpoint")
    heads = {i: strip_prefix(encoders[i], "head.") for i in (1, 2)}
    encoders = {i: _clean_backbone(e) for i, e in encoders.items()}
    arch, b1 = infer_arch(encoders[1], path)
    arch2, b2 = infer_arch(encoders[2], path)
    if arch2 != arch:
        raise WeightsError(f"{path}: backbone_1 is a {arch}, backbone_2 a {arch2}")
    card: dict[str, Any] = {}
    names = modalities
    if names is None and dataset_bands is not None and len(dataset_bands) == 2:
        names = list(dataset_bands)
        if b1 != b2 and [dataset_bands[n] for n in names] == [b2, b1]:
            names.reverse()  # the band counts say which backbone is which modality
            card["modalities_from"] = f"band counts: backbone_1 ({b1} bands) = {names[0]}, backbone_2 = {names[1]}"
    if names is None or len(names) != 2:
        raise WeightsError(
            f"{path}: a joint DeCUR checkpoint (backbone_1: {b1} bands, backbone_2: {b2} bands); "
            f"name its two modalities with {field}: [first, second]"
        )
    expected = dataset_bands if dataset_bands is not None else {m: SENSOR_BANDS[m] for m in names if m in SENSOR_BANDS}
    for i, (name, b) in enumerate(zip(names, (b1, b2), strict=True), start=1):
        want = expected.get(name)
        if want is not None and b not in (want if isinstance(want, tuple) else (want,)):
            raise WeightsError(
                f"{path}: backbone_{i} has {b} input bands but modality {name!r} has {want}; "
                f"set {field} to the right order"
            )
    projectors: dict[str, dict[str, Tensor]] = {}
    head_dim = None
    for i, name in enumerate(names, start=1):
        proj = strip_prefix(state, f"projector{i}.")
        if heads[i]:  # the release's MiT head (512 -> 2048) runs before the projector: decur's head_dim layout
            head_dim = int(heads[i]["weight"].shape[0])
            proj = {**{f"0.{k}": v for k, v in heads[i].items()}, **_shift(proj, 1)}
        if proj:
            projectors[name] = proj
    return Pretrained(
        path,
        "release-joint",
        arch,
        dict(zip(names, (encoders[1], encoders[2]), strict=True)),
        dict(zip(names, (b1, b2), strict=True)),
        projectors=projectors,
        head_dim=head_dim,
        common_dim=RELEASE_COMMON.get(b1) if projectors else None,
        card={"common_dim_source": "the release scripts' --dim_common (7168 for S1-S2, 6144 for RGB-X)", **card},
    )


def _shift(state: dict[str, Tensor], by: int) -> dict[str, Tensor]:
    out = {}
    for k, v in state.items():
        index, rest = k.split(".", 1)
        out[f"{int(index) + by}.{rest}"] = v
    return out


def _single_name(
    path: Path,
    bands: int,
    modalities: list[str] | None,
    dataset_bands: dict[str, int] | None,
    field: str,
    single: str | None,
) -> str:
    if modalities:
        if len(modalities) != 1:
            raise WeightsError(f"{path}: holds one encoder, but {field} names {modalities}")
        return modalities[0]
    if dataset_bands is None and single is not None:
        return single
    fits = [m for m, b in (dataset_bands or {}).items() if b == bands]
    if len(fits) != 1:
        among = f"modalities {fits} all have" if fits else f"no modality of {dataset_bands} has"
        raise WeightsError(f"{path}: one encoder of {bands} input bands, and {among} {bands}; name it with {field}")
    return fits[0]


def _rename(pre: Pretrained, modalities: list[str] | None, field: str) -> Pretrained:
    """Rename the encoders of a decur run or export in order, when ``modalities`` asks for other names."""
    if not modalities or modalities == pre.modalities:
        return pre
    if len(modalities) != len(pre.encoders):
        raise WeightsError(
            f"{pre.source}: holds encoders {pre.modalities}; {field} {modalities} must name each once, in that order"
        )
    rename = dict(zip(pre.modalities, modalities, strict=True))

    def move(d: dict[str, Any]) -> dict[str, Any]:
        return {rename[k]: v for k, v in d.items()}

    return Pretrained(
        pre.source,
        pre.kind,
        pre.arch,
        move(pre.encoders),
        move(pre.bands),
        move(pre.transforms),
        move(pre.projectors),
        pre.head_dim,
        pre.common_dim,
        pre.card,
    )


def _is_name(text: str) -> bool:
    from decur.weights.hub import is_name  # (hub builds on this module)

    return is_name(text)


def card_json(path: Path) -> dict[str, Any]:
    """A JSON card, or a one-line error naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable JSON card ({err})") from None
    if not isinstance(data, dict) or not re.match(r"decur-(backbone|export)/", str(data.get("format", ""))):
        raise WeightsError(f"{path}: not a decur weights card (no decur-export/... or decur-backbone/... format)")
    return data
