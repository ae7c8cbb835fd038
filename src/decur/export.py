"""Backbones out (plain timm state dicts as safetensors + a JSON card) and in (ours, torchgeo's, checkpoints)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from decur.config import ConfigError
from decur.models import create_encoder
from decur.models.encoder import read_weights_file
from decur.train.module import checkpoint_path

ENCODER_PREFIX = "model.encoders."


def _load_checkpoint(path: Path) -> dict[str, Any]:
    from decur.train.engine import read_checkpoint

    return read_checkpoint(path, "export")


def export_backbone(run_or_ckpt: str | Path, modality: str, out: str | Path) -> tuple[Path, Path]:
    """Write one modality's encoder as ``out`` (safetensors) and its card ``out.with_suffix('.json')``.

    The state dict has plain timm keys: ``timm.create_model(arch, in_chans=bands, num_classes=0)`` loads it with
    ``strict=True``; for ``mit_b0`` ... ``mit_b5`` the keys are SegFormer's original backbone layout
    (``patch_embed1.proj.weight``, ``block1.0.attn.q.weight``, ``norm4.weight``), which the public SegFormer and CMX
    code load with ``strict=True``. The card records arch, band count, the normalisation the encoder was trained
    with, the common/unique split of the embedding and a hash of the training config.

    Raises:
        ConfigError: If the checkpoint has no encoder for ``modality`` (the message lists those it has).
        RunError: No checkpoint, or not a decur checkpoint.

    """
    from safetensors.torch import save_file

    ckpt = _load_checkpoint(checkpoint_path(run_or_ckpt))
    config, stats = ckpt["hyper_parameters"]["config"], ckpt["hyper_parameters"]["stats"]
    prefix = f"{ENCODER_PREFIX}{modality}."
    weights = {k.removeprefix(prefix): v.contiguous() for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not weights:
        have = sorted({k.split(".")[2] for k in ckpt["state_dict"] if k.startswith(ENCODER_PREFIX)})
        raise ConfigError(f"--modality {modality!r}: no such encoder in {run_or_ckpt}; it has {have}")
    mod = next(m for m in config["data"]["modalities"] if m["name"] == modality)
    mean = mod["mean"] if mod["mean"] is not None else stats[modality][0]
    std = mod["std"] if mod["std"] is not None else stats[modality][1]
    k = config["model"]["projector"][-1] if config["model"]["projector"] else None
    common = config["method"]["common_dim"]
    if common is None and k is not None:
        common = round(config["method"]["common_share"] * k)
    card = {
        "format": "decur-backbone/1",
        "arch": config["model"]["arch"],
        "modality": modality,
        "bands": mod["bands"],
        "preprocessing": {"dataset": config["data"]["dataset"], "mean": mean, "std": std, "augment": mod["augment"]},
        "method": config["method"]["name"],
        "embed_dim": k,
        "common_dim": common,
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "load_with": _load_with(config["model"]["arch"], mod["bands"]),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out), metadata={"arch": card["arch"], "modality": modality})
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2))
    return out, card_path


def _load_with(arch: str, bands: int) -> str:
    from decur.models.mit import is_mit

    if is_mit(arch):
        return (
            f"SegFormer's original {arch} backbone (SegFormer / CMX code: load_state_dict(weights, strict=True)); "
            f"in decur: decur.models.mit.create_mit('{arch}', in_chans={bands})"
        )
    return f"timm.create_model('{arch}', in_chans={bands}, num_classes=0)"


def load_backbone(source: str | Path, arch: str, in_chans: int, modality: str | None = None) -> nn.Module:
    """A timm encoder (``num_classes=0``) initialised from ``source``, loaded with strict key matching.

    ``source`` may be a ``.safetensors`` file written by :func:`export_backbone`; a torchgeo-style weights file
    (``.pth``/``.pt``: a timm state dict, e.g. torchgeo's ``ResNet50_Weights.SENTINEL2_ALL_DECUR``, whose
    classifier ``fc.*`` keys are dropped); or a decur run folder / checkpoint together with ``modality``.
    """
    path = Path(source)
    if path.is_dir() or path.suffix == ".ckpt":
        if modality is None:
            raise ValueError("loading from a decur checkpoint needs the modality name")
        ckpt = _load_checkpoint(checkpoint_path(path))
        prefix = f"{ENCODER_PREFIX}{modality}."
        state = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    elif path.suffix == ".safetensors":
        state = read_weights_file(path, drop=())
    else:
        state = read_weights_file(path, drop=("fc.", "head."))
    encoder = create_encoder(arch, in_chans)
    try:
        missing, unexpected = encoder.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch, e.g. another band count
        raise ValueError(f"{path}: weights do not fit {arch} with {in_chans} input bands ({err})") from None
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit {arch} with {in_chans} input bands "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    return encoder
