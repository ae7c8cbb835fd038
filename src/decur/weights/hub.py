"""Weights by name, and export folders in the Hugging Face Hub's layout.

Names ``decur import`` (and every ``pretrained`` / ``source`` field through :func:`resolve`) accepts:

- a short name of the official release (:data:`RELEASE`, the files of the Hub repository ``wangyi111/DeCUR``
  listed in the DeCUR README; ``decur import --list`` prints them), e.g. ``rn50-ssl4eo-s12``;
- ``torchgeo:ResNet50_Weights.SENTINEL2_ALL_DECUR`` / ``...SENTINEL1_ALL_DECUR`` (:data:`TORCHGEO`; the URL from
  torchgeo's own enum when torchgeo is installed);
- ``hf:ORG/REPO[/FILE][@REVISION]``: one file, or the whole repository (a folder ``decur export --hub`` wrote),
  through ``huggingface_hub``'s cache, pinned to a revision when one is given.

Downloads land in ``huggingface_hub``'s cache (release and ``hf:`` names) or in ``$DECUR_CACHE`` (default
``~/.cache/decur``; torchgeo's URLs, checked against the sha256 prefix in their file names as torchvision does).
Offline, a name whose file is not cached yet fails in one line saying what to download and where to put it.

The Hub layout (``write_hub``): ``model.safetensors`` (every tensor as ``<modality>.encoder.<key>`` and
``<modality>.projector.<key>``), its ``model.pth`` twin, ``config.json`` (the card) and ``README.md`` with the
Hub's YAML metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decur.data.transforms import InputTransform
from decur.weights.export import vit_card
from decur.weights.formats import Pretrained, WeightsError

RELEASE_REPO = "wangyi111/DeCUR"
HUB_FORMAT = "decur-hub/1"


@dataclass(frozen=True)
class Published:
    """One published weights file: where it lives, what it holds, and whether decur can hold it."""

    file: str
    arch: str
    modalities: tuple[str, ...]
    kind: str
    """``joint`` (both encoders and projectors of a training checkpoint) or ``backbone`` (one encoder)."""
    unsupported: str | None = None
    """Why decur cannot load it (``None``: it can)."""


_RDA = "deformable attention (RDA) layers: decur's ResNets have none"
RELEASE: dict[str, Published] = {
    "rn50-ssl4eo-s12": Published("rn50_ssl4eo-s12_joint_decur_ep100.pth", "resnet50", ("s1", "s2"), "joint"),
    "rn50-ssl4eo-s12-sar": Published("rn50_ssl4eo-s12_sar_decur_ep100.pth", "resnet50", ("s1",), "backbone"),
    "rn50-ssl4eo-s12-ms": Published("rn50_ssl4eo-s12_ms_decur_ep100.pth", "resnet50", ("s2",), "backbone"),
    "rn50-rda-ssl4eo-s12": Published(
        "rn50_rda_ssl4eo-s12_joint_decur_ep100.pth", "resnet50", ("s1", "s2"), "joint", _RDA
    ),
    "rn50-rda-ssl4eo-s12-sar": Published(
        "rn50_rda_ssl4eo-s12_sar_decur_ep100.pth", "resnet50", ("s1",), "backbone", _RDA
    ),
    "rn50-rda-ssl4eo-s12-ms": Published(
        "rn50_rda_ssl4eo-s12_ms_decur_ep100.pth", "resnet50", ("s2",), "backbone", _RDA
    ),
    "vits16-ssl4eo-s12": Published(
        "vits16_ssl4eo-s12_joint_decur_ep100.pth", "vit_small_patch16_224", ("s1", "s2"), "joint"
    ),
    "vits16-ssl4eo-s12-sar": Published(
        "vits16_ssl4eo-s12_sar_decur_ep100.pth", "vit_small_patch16_224", ("s1",), "backbone"
    ),
    "vits16-ssl4eo-s12-ms": Published(
        "vits16_ssl4eo-s12_ms_decur_ep100.pth", "vit_small_patch16_224", ("s2",), "backbone"
    ),
    "rn50-geonrw": Published("rn50_geonrw_joint_decur_ep100.pth", "resnet50", ("rgb", "dem"), "joint"),
    "rn50-geonrw-rgb": Published("rn50_geonrw_rgb_decur_ep100.pth", "resnet50", ("rgb",), "backbone"),
    "rn50-geonrw-dem": Published("rn50_geonrw_dem_decur_ep100.pth", "resnet50", ("dem",), "backbone"),
    "rn50-rda-geonrw": Published("rn50_rda_geonrw_joint_decur_ep100.pth", "resnet50", ("rgb", "dem"), "joint", _RDA),
    "rn50-rda-geonrw-rgb": Published("rn50_rda_geonrw_rgb_decur_ep100.pth", "resnet50", ("rgb",), "backbone", _RDA),
    "rn50-rda-geonrw-dem": Published("rn50_rda_geonrw_dem_decur_ep100.pth", "resnet50", ("dem",), "backbone", _RDA),
    "vits16-geonrw": Published("vits16_geonrw_joint_decur_ep100.pth", "vit_small_patch16_224", ("rgb", "dem"), "joint"),
    "vits16-geonrw-rgb": Published("vits16_geonrw_rgb_decur_ep100.pth", "vit_small_patch16_224", ("rgb",), "backbone"),
    "vits16-geonrw-dem": Published("vits16_geonrw_dem_decur_ep100.pth", "vit_small_patch16_224", ("dem",), "backbone"),
    "mitb2-sunrgbd": Published("mitb2_sunrgbd_rgb_hha_decur_ep200.pth", "mit_b2", ("rgb", "hha"), "joint"),
    "mitb2-sunrgbd-rgb": Published("mitb2_sunrgbd_backbone_rgb_decur_ep200.pth", "mit_b2", ("rgb",), "backbone"),
    "mitb2-sunrgbd-hha": Published("mitb2_sunrgbd_backbone_hha_decur_ep200.pth", "mit_b2", ("hha",), "backbone"),
    "mitb5-sunrgbd": Published("mitb5_sunrgbd_rgb_hha_decur_ep200.pth", "mit_b5", ("rgb", "hha"), "joint"),
    "mitb5-sunrgbd-rgb": Published("mitb5_sunrgbd_backbone_rgb_decur_ep200.pth", "mit_b5", ("rgb",), "backbone"),
    "mitb5-sunrgbd-hha": Published("mitb5_sunrgbd_backbone_hha_decur_ep200.pth", "mit_b5", ("hha",), "backbone"),
}
"""The release's files (DeCUR README, "Pretrained models"), by short name; in the Hub repository ``RELEASE_REPO``.
The release publishes no hashes: pin a revision with ``hf:wangyi111/DeCUR/<file>@<commit>`` for a fixed file."""

TORCHGEO: dict[str, tuple[str, str]] = {
    "ResNet50_Weights.SENTINEL1_ALL_DECUR": (
        "https://huggingface.co/torchgeo/decur/resolve/9328eeb90c686a88b30f8526ed757b4bc0f12027/"
        "rn50_ssl4eo-s12_sar_decur_ep100-f0e69ba2.pth",
        "s1",
    ),
    "ResNet50_Weights.SENTINEL2_ALL_DECUR": (
        "https://huggingface.co/torchgeo/decur/resolve/eba7ae5945d482a4319be046d34b552db5dd9950/"
        "rn50_ssl4eo-s12_ms_decur_ep100-fc6b09ff.pth",
        "s2",
    ),
}
"""torchgeo's DeCUR weights (``torchgeo.models.ResNet50_Weights``): URL as in torchgeo 0.8, and the modality."""


def is_name(text: str) -> bool:
    """Whether ``text`` is a weights name (not a path): a release short name, ``torchgeo:...`` or ``hf:...``."""
    return text in RELEASE or text.startswith(("torchgeo:", "hf:"))


def resolve(name: str) -> tuple[Path, list[str] | None]:
    """The local file (or folder) of weights ``name``, downloaded or found in the cache, and its modality names.

    Raises:
        WeightsError: An unknown name, weights decur cannot hold, or a file that is neither cached nor downloadable
            (the message says what to download and where to put it).

    """
    if name in RELEASE:
        entry = RELEASE[name]
        if entry.unsupported:
            raise WeightsError(f"{name}: {entry.file} has {entry.unsupported}; decur cannot load it")
        return _hf(RELEASE_REPO, entry.file, None, name), list(entry.modalities)
    if name.startswith("torchgeo:"):
        key = name.removeprefix("torchgeo:")
        if key not in TORCHGEO:
            raise WeightsError(f"{name}: not one of torchgeo's DeCUR weights {['torchgeo:' + k for k in TORCHGEO]}")
        url, modality = _torchgeo_url(key), TORCHGEO[key][1]
        return _download(url, name), [modality]
    if name.startswith("hf:"):
        match = re.fullmatch(r"hf:([\w.-]+/[\w.-]+)(?:/([^@]+))?(?:@([\w.-]+))?", name)
        if match is None:
            raise WeightsError(f"{name}: write hf:ORG/REPO, hf:ORG/REPO/FILE or either with @REVISION")
        repo, file, revision = match.groups()
        return _hf(repo, file, revision, name), None
    raise WeightsError(f"{name}: not a weights name; `decur import --list` prints the names decur knows")


def listing() -> str:
    """The table ``decur import --list`` prints: every name, what it holds, and whether decur can load it."""
    rows = [f"{'name':<42} {'arch':<22} {'modalities':<10} {'kind':<9} file"]
    for name, e in RELEASE.items():
        note = f"  (cannot load: {e.unsupported})" if e.unsupported else ""
        rows.append(f"{name:<42} {e.arch:<22} {','.join(e.modalities):<10} {e.kind:<9} {e.file}{note}")
    for key, (url, modality) in TORCHGEO.items():
        rows.append(f"{'torchgeo:' + key:<42} {'resnet50':<22} {modality:<10} {'backbone':<9} {url.rsplit('/', 1)[1]}")
    rows.append(f"release files: hf:{RELEASE_REPO}; any Hub repository or file: hf:ORG/REPO[/FILE][@REVISION]")
    return "\n".join(rows)


def cache_dir() -> Path:
    """Where torchgeo-URL downloads are kept: ``$DECUR_CACHE`` or ``~/.cache/decur``, then ``weights/``."""
    return Path(os.environ.get("DECUR_CACHE", Path.home() / ".cache" / "decur")) / "weights"


def _torchgeo_url(key: str) -> str:
    try:
        import torchgeo.models as tgm

        enum_name, member = key.split(".")
        return str(getattr(getattr(tgm, enum_name), member).url)
    except (ImportError, AttributeError):
        return TORCHGEO[key][0]


def _download(url: str, name: str) -> Path:
    """``url`` into ``cache_dir()`` (kept), its sha256 checked against the 8-hex prefix in the file name."""
    target = cache_dir() / url.rsplit("/", 1)[1]
    prefix = re.search(r"-([0-9a-f]{8,})\.", target.name)
    if not target.is_file():
        from torch.hub import download_url_to_file

        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            download_url_to_file(url, str(target), progress=False)
        except OSError as err:
            raise WeightsError(
                f"{name}: cannot download {url} ({getattr(err, 'reason', err)}); download it by hand and put it at "
                f"{target}"
            ) from None
    if prefix is not None:
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if not digest.startswith(prefix.group(1)):
            target.unlink()
            raise WeightsError(f"{name}: {target.name} has sha256 {digest[:8]}..., not {prefix.group(1)}: removed")
    return target


def _hf(repo: str, file: str | None, revision: str | None, name: str) -> Path:
    """A file (or the whole snapshot) of Hub repository ``repo`` through huggingface_hub's cache."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        if file is None:
            return Path(snapshot_download(repo, revision=revision))
        return Path(hf_hub_download(repo, file, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        where = f"https://huggingface.co/{repo}/resolve/{revision or 'main'}/{file or ''}"
        reason = str(err).strip().splitlines()[0][:160]
        raise WeightsError(
            f"{name}: not in the Hugging Face cache and not downloadable here ({reason}); download {where} and pass "
            "the file (or folder) itself, e.g. `decur import FILE --out DIR`"
        ) from None


def write_hub(pre: Pretrained, out: str | Path, overwrite: bool = False) -> Path:
    """``pre`` as a folder in the Hub's layout (module docstring), written aside and renamed into place.

    Raises:
        WeightsError: ``out`` exists (without ``overwrite``).

    """
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not overwrite:
        raise WeightsError(f"--hub {out}: exists; pass --overwrite to replace it")
    tensors: dict[str, Any] = {}
    modalities = {}
    for m in pre.modalities:
        tensors |= {f"{m}.encoder.{k}": v.contiguous() for k, v in pre.encoders[m].items()}
        tensors |= {f"{m}.projector.{k}": v.contiguous() for k, v in (pre.projectors.get(m) or {}).items()}
        t = pre.transforms.get(m)
        modalities[m] = {
            "in_chans": pre.bands[m],
            "bands": t.bands if t is not None else None,
            "units": t.units if t is not None else None,
            "transform": t.to_card() if t is not None else None,
            "projector": bool(pre.projectors.get(m)),
        }
    config = {
        "format": HUB_FORMAT,
        "library_name": "decur",
        "arch": pre.arch,
        "modalities": modalities,
        "common_dim": pre.common_dim,
        "head_dim": pre.head_dim,
        "source": {"kind": pre.kind, "path": str(pre.source)},
        **vit_card(pre),
    }
    aside = out.with_name(out.name + ".partial")
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(parents=True)
    save_file(tensors, str(aside / "model.safetensors"), metadata={"format": "pt", "library": "decur"})
    torch.save(tensors, aside / "model.pth")
    (aside / "config.json").write_text(json.dumps(config, indent=2))
    (aside / "README.md").write_text(model_card(config))
    if out.exists():
        shutil.rmtree(out)
    aside.replace(out)
    return out


def read_hub(folder: Path) -> Pretrained:
    """A folder ``write_hub`` wrote (or its snapshot from the Hub).

    Raises:
        WeightsError: A missing or foreign ``config.json``, or tensors of a modality the config does not list.

    """
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{folder / 'config.json'}: not readable ({err})") from None
    if config.get("format") != HUB_FORMAT:
        raise WeightsError(f"{folder / 'config.json'}: not a decur Hub config (format {config.get('format')!r})")
    tensors = load_file(str(folder / "model.safetensors"))
    entries = config["modalities"]
    stray = sorted({k.split(".", 1)[0] for k in tensors} - set(entries))
    if stray:
        raise WeightsError(f"{folder / 'model.safetensors'}: tensors of {stray}, which config.json does not list")
    encoders, projectors, bands, transforms = {}, {}, {}, {}
    for m, entry in entries.items():
        encoders[m] = {k.removeprefix(f"{m}.encoder."): v for k, v in tensors.items() if k.startswith(f"{m}.encoder.")}
        proj = {k.removeprefix(f"{m}.projector."): v for k, v in tensors.items() if k.startswith(f"{m}.projector.")}
        if proj:
            projectors[m] = proj
        bands[m] = int(entry["in_chans"])
        if isinstance(entry.get("transform"), dict):
            transforms[m] = InputTransform.from_card(entry["transform"])
    extra = {k: v for k, v in config.items() if k not in ("modalities", "common_dim", "head_dim", "arch")}
    return Pretrained(folder / "config.json", "decur-hub", config["arch"], encoders, bands, transforms, projectors,
                      config.get("head_dim"), config.get("common_dim"), extra)  # fmt: skip


def model_card(config: dict[str, Any]) -> str:
    """``README.md`` of a Hub folder: the Hub's YAML metadata, then what the weights are and how to load them."""
    mods = config["modalities"]
    sentinel = any(m in ("s1", "s2") for m in mods)
    tags = ["decur", "self-supervised-learning", "multimodal", "pytorch", "timm"]
    tags += ["remote-sensing", "earth-observation", "sentinel-1", "sentinel-2"] if sentinel else []
    front = ["---", "library_name: decur", "license: apache-2.0", "tags:", *[f"  - {t}" for t in tags]]
    if sentinel:
        front += ["datasets:", "  - wangyi111/SSL4EO-S12"]
    front += ["pipeline_tag: image-feature-extraction", "---", ""]
    lines = [
        f"# DeCUR {config['arch']} encoders: {', '.join(mods)}",
        "",
        "Multimodal self-supervised weights trained with DeCUR (Wang et al., arXiv 2309.05300): one encoder per "
        f"modality; the projector's first {config.get('common_dim')} dimensions are common to the modalities, the "
        "rest unique to each.",
        "",
        "| modality | bands | units | input transform |",
        "|---|---|---|---|",
    ]
    for m, e in mods.items():
        steps = " → ".join(s["op"] for s in (e.get("transform") or {}).get("steps", []))
        lines.append(f"| {m} | {', '.join(e.get('bands') or [str(e['in_chans'])])} | {e.get('units')} | {steps} |")
    first = next(iter(mods))
    lines += [
        "",
        "## Load",
        "",
        "```python",
        "from decur.weights.joint import MultimodalEncoder",
        "",
        'encoder = MultimodalEncoder.from_pretrained("hf:ORG/REPO")   # or this folder; output="common" too',
        "```",
        "",
        "One encoder in timm (the keys of `model.safetensors` under `<modality>.encoder.` are timm's):",
        "",
        "```python",
        "import timm",
        "from safetensors.torch import load_file",
        "",
        f'state = {{k.split(".encoder.", 1)[1]: v for k, v in load_file("model.safetensors").items() '
        f'if k.startswith("{first}.encoder.")}}',
        f'model = timm.create_model("{config["arch"]}", in_chans={mods[first]["in_chans"]}, num_classes=0)',
        "model.load_state_dict(state)",
        "```",
        "",
        "In decur: `decur import hf:ORG/REPO --out weights/x` writes an export folder for `decur transfer`, "
        "`decur embed`, torchgeo (`decur.weights.torchgeo.torchgeo_weights`) and TerraTorch (`decur_joint`). "
        "The input transform above is applied by decur; timm users apply it themselves.",
        "",
    ]
    return "\n".join(front + lines)
