"""decur's weights format: an export folder (one card + per-modality plain state dicts), written and read.

``decur export RUN --out DIR`` and ``decur import FILE --out DIR`` write the same layout::

    DIR/card.json                      format decur-export/1: arch, common/unique split, per modality:
                                       in_chans, band names, input units, the input transform (steps + statistics)
    DIR/<modality>.safetensors         the encoder: timm keys (timm.create_model(arch, in_chans, num_classes=0)
                                       loads it strictly), SegFormer's keys for MiT
    DIR/<modality>.pth                 the same tensors saved with torch.save (torchgeo / TerraTorch read .pth)
    DIR/<modality>.projector.safetensors   the projector (decur.models.projector layout), when known

``decur export RUN --modality M --out FILE.safetensors`` writes one encoder and its card ``FILE.json``
(format decur-backbone/2: the same fields for one modality).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from decur.config import ConfigError
from decur.data.transforms import InputTransform, image_transform, sentinel_transform
from decur.data.workers import PartialFiles
from decur.datasets import dataset_spec
from decur.models.encoder import vit_patch
from decur.models.mit import is_mit
from decur.runfiles import checkpoint_path, read_checkpoint
from decur.weights.formats import CARD, Pretrained, WeightsError, card_json, read_pretrained, sha256, strip_prefix
from decur.weights.inputs import default_transforms


def run_transform(dataset: str, modality: str, bands: int, stats: tuple[list[float], list[float]]) -> InputTransform:
    """The ``decur`` input transform of one modality of a pretraining run on ``dataset`` (its spec's ``pixels``)."""
    pixels = dataset_spec(dataset).pixels
    if pixels == "sentinel" and bands in (2, 12, 13):
        return sentinel_transform("decur", modality, bands, stats)
    transform = image_transform("decur", modality, bands, stats)
    if pixels != "image":
        transform.units = f"as decur's {dataset} reader returns them"
    return transform


def read_run(path: Path) -> Pretrained:
    """The encoders, projectors and input transforms of a decur run folder or checkpoint."""
    ckpt = read_checkpoint(checkpoint_path(path), "loading its encoders")
    config, stats = ckpt["hyper_parameters"]["config"], ckpt["hyper_parameters"]["stats"]
    state = ckpt["state_dict"]
    encoders, projectors, bands, transforms = {}, {}, {}, {}
    for mod in config["data"]["modalities"]:
        m = mod["name"]
        encoders[m] = {k: v.contiguous() for k, v in strip_prefix(state, f"model.encoders.{m}.").items()}
        projectors[m] = dict(strip_prefix(state, f"model.projectors.{m}."))
        bands[m] = int(mod["bands"])
        mean = mod["mean"] if mod["mean"] is not None else stats[m][0]
        std = mod["std"] if mod["std"] is not None else stats[m][1]
        transforms[m] = run_transform(config["data"]["dataset"], m, bands[m], (mean, std))
    k = config["model"]["projector"][-1] if config["model"]["projector"] else None
    common = config["method"]["common_dim"]
    if common == "auto":  # a checkpoint from the warm-up of common_dim=auto: every dimension is common so far
        common = k
    if common is None and k is not None:
        common = round(config["method"]["common_share"] * k)
    card = {
        "method": config["method"]["name"],
        "embed_dim": k,
        "projector_widths": config["model"]["projector"],
        "dataset": config["data"]["dataset"],
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
    }
    found = ckpt.get("common_dim_auto")
    if found is not None and found["found"] is not None:  # (during the warm-up every dimension is common)
        card["common_dim_found_by"] = {
            "rule": "auto",
            "found_at_step": found["found_at"],
            "warmup_steps": found["warmup_steps"],
        }
    if vit_patch(config["model"]["arch"]) is not None:
        card["vit_pool"] = config["model"].get("vit_pool", "token")
        card["crop_size"] = config["data"]["crop_size"]
    return Pretrained(
        path,
        "decur-run",
        config["model"]["arch"],
        encoders,
        bands,
        transforms,
        projectors,
        config["model"].get("head_dim"),
        common,
        card,
    )


def load_with(arch: str, in_chans: int, vit_pool: str = "token") -> str:
    """How other code loads one exported encoder (said in the card)."""
    if is_mit(arch):
        return (
            f"SegFormer's original {arch} backbone (SegFormer / CMX code: load_state_dict(weights, strict=True));"
            f" in decur: decur.models.mit.create_mit('{arch}', in_chans={in_chans})"
        )
    pool = ", global_pool='avg', fc_norm=False" if vit_pool == "avg" else ""
    return f"timm.create_model('{arch}', in_chans={in_chans}, num_classes=0{pool})"


def vit_card(pre: Pretrained) -> dict[str, Any]:
    """A plain ViT's patch size, the side of its position-embedding grid in pixels and its pooling (card fields).

    The position embedding is stored at ``pos_embed_size`` (timm's 224 px); decur's encoders and timm's
    ``dynamic_img_size=True`` resample it to the input at every forward, so any multiple of the patch runs.
    """
    patch = vit_patch(pre.arch)
    if patch is None:
        return {}
    return {"patch_size": patch, "pos_embed_size": int(pre.arch.rsplit("_", 1)[1]), "vit_pool": pre.vit_pool}


def _modality_card(pre: Pretrained, m: str) -> dict[str, Any]:
    transform = pre.transforms.get(m)
    return {
        "in_chans": pre.bands[m],
        "bands": transform.bands if transform else None,
        "units": transform.units if transform else None,
        "transform": transform.to_card() if transform else None,
        "load_with": load_with(pre.arch, pre.bands[m], pre.vit_pool),
    }


def _refuse_existing(out: Path, source: Path, overwrite: bool, what: str) -> None:
    """An output never replaces its own input or a checkpoint, and replaces anything else only when asked."""
    if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
        raise WeightsError(f"--out {out}: holds the weights it is written from ({source}); choose another path")
    if out.suffix == ".ckpt" and out.exists():
        raise WeightsError(f"--out {out}: is a training checkpoint, which an export never replaces")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise WeightsError(f"--out {out}: {what} exists; choose another path or pass --overwrite to replace it")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` with renames only (the old output stays whole until then)."""
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def write_export(
    pre: Pretrained, out: str | Path, source: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Write ``pre`` as an export folder (module docstring); returns the card's path.

    The folder is written aside (``.NAME.partial``) and renamed into place when complete: an interrupted or failed
    write leaves no half export and the previous one intact.

    Args:
        pre: The weights.
        out: The export folder; an existing one (not empty) is replaced only with ``overwrite``.
        source: What the card records as the source (default: ``pre``'s kind and path).
        overwrite: Replace an existing export.

    Raises:
        WeightsError: A modality has no input transform (give one: ``decur import --input-transform``), or ``out``
            exists (without ``overwrite``) or lies inside the source.

    """
    missing = [m for m in pre.modalities if m not in pre.transforms]
    if missing:
        raise WeightsError(f"{pre.source}: no input transform recorded for {missing}; give --input-transform")
    out = Path(out)
    _refuse_existing(out, Path(pre.source), overwrite, "an export folder or file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_folder(pre, tmp, source)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, out)
    return out / CARD


def _write_folder(pre: Pretrained, out: Path, source: dict[str, Any] | None) -> None:
    from safetensors.torch import save_file

    modalities = {}
    for m in pre.modalities:
        weights = {k: v.contiguous() for k, v in pre.encoders[m].items()}
        save_file(weights, str(out / f"{m}.safetensors"), metadata={"arch": pre.arch, "modality": m})
        torch.save(weights, out / f"{m}.pth")
        entry = {**_modality_card(pre, m), "weights": f"{m}.safetensors", "weights_pth": f"{m}.pth", "projector": None}
        if pre.projectors.get(m):
            save_file(
                {k: v.contiguous() for k, v in pre.projectors[m].items()}, str(out / f"{m}.projector.safetensors")
            )
            entry["projector"] = f"{m}.projector.safetensors"
        modalities[m] = entry
    card = {
        "format": "decur-export/1",
        "arch": pre.arch,
        "modalities": modalities,
        "common_dim": pre.common_dim,
        "head_dim": pre.head_dim,
        "source": source or {"kind": pre.kind, "path": str(pre.source)},
        **{k: v for k, v in pre.card.items() if k not in ("format", "arch", "modalities")},
        **vit_card(pre),
    }
    (out / CARD).write_text(json.dumps(card, indent=2))


def export_backbone(
    run_or_ckpt: str | Path, modality: str, out: str | Path, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write one modality's encoder as ``out`` (safetensors) and its card ``out.with_suffix('.json')``.

    The state dict has plain timm keys (``timm.create_model(arch, in_chans=bands, num_classes=0)`` loads it with
    ``strict=True``); for MiT, SegFormer's original backbone keys. The card (``decur-backbone/2``) records arch,
    band names, units and the input transform, the common/unique split and a hash of the training config.

    Both files are written aside and renamed into place together: ``out`` must end in ``.safetensors`` (so neither
    file can land on a checkpoint or on each other), and existing files are replaced only with ``overwrite``.

    Raises:
        ConfigError: If the run has no encoder for ``modality`` (the message lists those it has).
        RunError: No checkpoint, or not a decur checkpoint.
        WeightsError: ``out`` is not a ``.safetensors`` path, or it or its card exists (without ``overwrite``).

    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != ".safetensors":
        raise WeightsError(
            f"--out {out}: with --modality, name the weights file FILE.safetensors (its card is written beside it "
            "as FILE.json)"
        )
    for target in (out, out.with_suffix(".json")):
        if target.is_dir():
            raise WeightsError(f"--out {out}: {target} is a folder; name a file (or omit --modality for a folder)")
        _refuse_existing(target, Path(run_or_ckpt), overwrite, "a file")
    pre = read_run(Path(run_or_ckpt))
    if modality not in pre.encoders:
        raise ConfigError(f"--modality {modality!r}: no such encoder in {run_or_ckpt}; it has {pre.modalities}")
    card = {
        "format": "decur-backbone/2",
        "arch": pre.arch,
        "modality": modality,
        **_modality_card(pre, modality),
        "common_dim": pre.common_dim,
        "head_dim": pre.head_dim,
        **pre.card,
        **vit_card(pre),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    card_path = out.with_suffix(".json")
    with PartialFiles(out.parent) as files:
        save_file(pre.encoders[modality], str(files.path(out.name)), metadata={"arch": pre.arch, "modality": modality})
        files.path(card_path.name).write_text(json.dumps(card, indent=2))
        files.commit()
    return out, card_path


def read_export(path: Path) -> Pretrained:
    """An export folder (or its ``card.json``), or one ``.safetensors`` encoder with its ``.json`` card.

    Raises:
        WeightsError: A card or weights file is missing or unreadable, or a band count disagrees with the card.

    """
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    card_path = path / CARD if path.is_dir() else path
    card = card_json(card_path)
    folder = card_path.parent
    if card["format"].startswith("decur-backbone/"):
        weights = card_path.with_suffix(".safetensors")
        entries = {card["modality"]: {**card, "weights": weights.name}}
    else:
        entries = card["modalities"]
    encoders, projectors, bands, transforms = {}, {}, {}, {}
    for m, entry in entries.items():
        file = folder / entry["weights"]
        if not file.is_file():
            raise WeightsError(f"{card_path}: lists {file.name} for {m!r}, which is missing")
        encoders[m] = load_file(str(file))
        count = entry.get("in_chans", entry.get("bands"))  # decur-backbone/1 stored the count as bands
        if not isinstance(count, int):
            raise WeightsError(f"{card_path}: {m!r} has no in_chans (band count)")
        bands[m] = count
        if isinstance(entry.get("transform"), dict):
            transforms[m] = InputTransform.from_card(entry["transform"])
        if entry.get("projector"):
            projectors[m] = load_file(str(folder / entry["projector"]))
    extra = {k: v for k, v in card.items() if k not in ("modalities", "common_dim", "head_dim", "arch")}
    return Pretrained(
        card_path,
        "decur-export",
        card["arch"],
        encoders,
        bands,
        transforms,
        projectors,
        card.get("head_dim"),
        card.get("common_dim"),
        extra,
    )


def import_weights(
    source: str | Path,
    out: str | Path,
    modalities: list[str] | None = None,
    input_transform: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, Pretrained]:
    """``decur import``: read any accepted layout (``decur.weights.read_pretrained``), write an export folder.

    Args:
        source: The weights file or folder.
        out: The export folder to write.
        modalities: Names of the encoders in file order (a joint release file needs two, e.g. ``[s1, s2]``).
        input_transform: Rule for modalities without a recorded transform (``decur.data.transforms.RULES``);
            default ``ssl4eo_release`` for the release's and torchgeo's Sentinel weights.
        overwrite: Replace an existing export at ``out`` (else refused before anything is read).

    Returns:
        The written ``card.json`` and the weights as written (with their input transforms).

    """
    path, name = Path(source), None
    if not path.exists():
        from decur.weights.hub import is_name, resolve  # (hub builds on this module)

        if is_name(str(source)):  # a release short name, torchgeo:..., hf:...: its file, and its modality names
            name = str(source)
            path, named = resolve(name)
            modalities = modalities or named
    _refuse_existing(Path(out), path, overwrite, "an export folder or file")
    # without names, Sentinel weights are named by band count (2 -> s1, 13 -> s2); runs and exports have names
    pre = read_pretrained(path, modalities or None, None if modalities else {"s1": 2, "s2": 13}, "--modalities")
    pre = dataclasses.replace(pre, transforms=default_transforms(pre, input_transform, "import"))
    source_card = {"kind": pre.kind, "path": str(path.resolve()), **({"name": name} if name else {})}
    if path.is_file():
        source_card["sha256"] = sha256(path)
    return write_export(pre, out, source_card, overwrite), pre
