"""RGB-D: raw NYU / SUN RGB-D depth readers, folder conversion to HHA, and the segmentation datasets.

The datasets follow the layout CMX-style RGB-D code uses (SUN-RGBD, NYUv2).

Dataset layout::

    root/RGB/<name>.jpg|png      colour image
    root/HHA/<name>.png|jpg      HHA encoding (``decur data hha``), or root/Depth/<name>.png with depth_folder
    root/Label/<name>.png        classes 1..C, 0 = ignore (SUN-RGBD: 37 classes, NYUv2: 40)
    root/train.txt, test.txt     one sample per line; the first token's stem is the name
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from decur.data.crops import CroppedViews
from decur.data.errors import DatasetError
from decur.data.hha import NYU_CAMERA, depth_to_hha
from decur.datasets import dataset_spec

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm")


def read_depth(path: str | Path, encoding: str) -> np.ndarray:
    """Depth in metres (0 = missing) from one of the common encodings.

    Args:
        path: The depth file.
        encoding: ``nyu_raw`` (raw Kinect v1 disparity, 16-bit PGM stored little-endian; 2047 = invalid;
            ``351.3 / (1092.5 − d)`` m as the NYU toolbox), ``sun`` (SUN RGB-D PNG, 16-bit rotated right by
            3 bits, mm), ``mm`` (16-bit PNG in millimetres), ``0.1mm`` (16-bit PNG in tenths of a millimetre,
            e.g. NYU's filled depth in Depth2HHA), ``m`` (float image in metres).

    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "depth file is missing", "check the path")
    if encoding == "nyu_raw":
        raw = _read_pgm_little_endian(path).astype(np.float64)
        depth = np.where(raw >= 2047, 0.0, 351.3 / np.maximum(1092.5 - raw, 1e-6))
        return np.where(depth > 0, depth, 0.0)
    try:
        with Image.open(path) as img:
            d = np.asarray(img)
    except OSError as err:
        raise DatasetError(path, f"cannot be read as an image ({err})", "re-export the file") from None
    if d.ndim != 2:
        raise DatasetError(
            path,
            f"holds a {d.shape[-1]}-channel image, not a one-channel depth map",
            "give the folder of depth images (the RGB frames go to the rgb folder)",
        )
    if encoding == "sun":
        d = d.astype(np.uint16)
        return ((d >> 3) | (d << 13)).astype(np.float64) / 1000
    scale = {"mm": 1e-3, "0.1mm": 1e-4, "m": 1.0}.get(encoding)
    if scale is None:
        raise ValueError(f"unknown depth encoding {encoding!r}: nyu_raw, sun, mm, 0.1mm or m")
    return d.astype(np.float64) * scale


def _read_pgm_little_endian(path: Path) -> np.ndarray:
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:  # magic, width, height, maxval (comments skipped)
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        tokens.append(data[pos:end])
        pos = end
    if tokens[0] != b"P5":
        raise DatasetError(path, f"is not a binary PGM (magic {tokens[0]!r})", "give the raw NYU .pgm")
    width, height = int(tokens[1]), int(tokens[2])
    pixels = np.frombuffer(data, dtype="<u2", count=width * height, offset=pos + 1)
    return pixels.reshape(height, width)


MAX_DEPTH_M = 8.0
"""Depth beyond this is clamped to it before HHA, as the SUN RGB-D toolbox does (``read3dPoints``: depth > 8 m
set to 8 m); past the sensors' range (Kinect v1 ~4.5 m, v2 ~8 m) readings are noise."""


def read_intrinsics(path: Path) -> np.ndarray:
    """A 3 x 3 camera matrix from a text file of 9 numbers, row by row (SUN-RGBD's ``intrinsics.txt``)."""
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError) as err:
        raise DatasetError(path, f"cannot be read as 9 numbers ({err})", "give fx 0 cx 0 fy cy 0 0 1") from None
    if values.size != 9:
        raise DatasetError(path, f"holds {values.size} numbers, expected 9 (a 3 x 3 matrix)", "fix the file")
    return values.reshape(3, 3)


def camera_for(depth_path: Path, camera: np.ndarray | None, intrinsics: Path | None) -> np.ndarray:
    """The camera matrix of one depth image.

    A fixed ``camera`` wins; else ``intrinsics/<stem>.txt`` when a folder is given (it must exist); else the
    ``intrinsics.txt`` of SUN-RGBD's original layout (``<scene>/depth/<name>.png`` next to
    ``<scene>/intrinsics.txt``); else NYU Depth v2's camera.
    """
    if camera is not None:
        return camera
    if intrinsics is not None:
        own = intrinsics / f"{depth_path.stem}.txt"
        if not own.is_file():
            raise DatasetError(own, "intrinsics file is missing", "one <name>.txt per depth image, or use --camera")
        return read_intrinsics(own)
    scene = depth_path.parent.parent / "intrinsics.txt"
    return read_intrinsics(scene) if scene.is_file() else NYU_CAMERA


def convert_folder_to_hha(
    src: str | Path,
    dst: str | Path,
    encoding: str,
    camera: np.ndarray | None = None,
    intrinsics: str | Path | None = None,
    max_depth_m: float = MAX_DEPTH_M,
) -> list[Path]:
    """Write ``dst/<stem>.png`` HHA images for every depth image in ``src``; returns the written paths.

    Args:
        src: Folder of depth images.
        dst: Output folder.
        encoding: Depth encoding (``read_depth``).
        camera: One camera matrix for every image (``--camera``).
        intrinsics: Folder of per-image ``<stem>.txt`` camera matrices (see ``camera_for``).
        max_depth_m: Clamp depth beyond this (``MAX_DEPTH_M``).

    Raises:
        DatasetError: ``dst`` is ``src`` or any output would overwrite an input file; no depth images in ``src``.

    Warns:
        UserWarning: Once per folder, naming examples, when depth images look wrongly decoded: no valid pixel
            (all zero), more than half of the valid pixels beyond ``max_depth_m``, or a median nearer than 0.2 m
            (indoor scenes lie at 0.5-8 m; a wrong ``encoding`` is the usual cause).

    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DatasetError(src, "depth folder does not exist", "give the folder of depth images")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(src, "holds no depth images", "check the folder")
    inputs = {p.resolve() for p in files}
    outputs = {path: dst / f"{path.stem}.png" for path in files}
    clash = [out for out in outputs.values() if out.resolve() in inputs]
    if dst.resolve() == src.resolve() or clash:
        raise DatasetError(dst, "would overwrite the depth images with HHA", "give another destination, e.g. HHA/")
    dst.mkdir(parents=True, exist_ok=True)
    written, odd = [], DepthRangeNotes(max_depth_m)
    folder = Path(intrinsics) if intrinsics is not None else None
    for path in files:
        depth = read_depth(path, encoding)
        odd.see(path, depth)
        depth = np.minimum(depth, max_depth_m)
        hha = depth_to_hha(depth, camera_for(path, camera, folder), valid=depth > 0)
        Image.fromarray(hha).save(outputs[path])
        written.append(outputs[path])
    odd.warn(encoding)
    return written


class DepthRangeNotes:
    """Collects depth images whose values are implausible for indoor RGB-D, to warn once per folder."""

    def __init__(self, max_depth_m: float) -> None:
        self.max_depth_m = max_depth_m
        kinds = ("no valid pixel (all zero)", f"most pixels beyond {max_depth_m:g} m", "median nearer than 0.2 m")
        self.found: dict[str, list[str]] = {kind: [] for kind in kinds}

    def see(self, path: Path, depth: np.ndarray) -> None:
        """Check one image (metres, 0 = missing)."""
        valid = depth[depth > 0]
        notes = list(self.found)
        if valid.size == 0:
            self.found[notes[0]].append(path.name)
        elif (valid > self.max_depth_m).mean() > 0.5:
            self.found[notes[1]].append(path.name)
        elif float(np.median(valid)) < 0.2:
            self.found[notes[2]].append(path.name)

    def warn(self, encoding: str) -> None:
        """One warning per kind of problem, with up to three examples."""
        import warnings

        for note, names in self.found.items():
            if names:
                warnings.warn(
                    f"{len(names)} depth image(s) with {note}, e.g. {', '.join(names[:3])}: check --encoding "
                    f"(now {encoding!r}; SUN RGB-D PNGs are 'sun', raw NYU PGMs 'nyu_raw', 16-bit mm PNGs 'mm')",
                    stacklevel=3,
                )


class RGBDSegmentation(Dataset[dict[str, Tensor]]):
    """SUN-RGBD / NYUv2 samples: ``rgb`` and ``hha`` (3 x H x W in [0, 1]) or ``depth`` (1 x H x W, m), ``mask``.

    Args:
        root: Dataset folder (layout in the module docstring).
        split: ``train`` or ``test`` (reads ``<split>.txt``), or ``all`` (both lists: SUN-RGBD pretraining on all
            10,335 pairs, the paper's setting).
        num_classes: 37 (SUN-RGBD) or 40 (NYUv2); labels above it are an error.
        depth_folder: ``None`` reads ``HHA/``; a name (e.g. ``"Depth"``) reads depth images instead.
        depth_encoding: Encoding of those depth images (see ``read_depth``).
        with_mask: Read ``Label/`` (segmentation); pretraining leaves it out.
        modalities: The modalities to read and return (``rgb`` and/or ``hha``/``depth``); ``None``: both. A run on
            one modality reads (and checks the folder of) that one only.

    Images may differ in size between samples (SUN-RGBD); the modalities and the mask of one sample must agree.

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_classes: int = 37,
        depth_folder: str | None = None,
        depth_encoding: str = "mm",
        with_mask: bool = True,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.num_classes, self.depth_folder, self.depth_encoding = num_classes, depth_folder, depth_encoding
        self.names = []
        for part in ("train", "test") if split == "all" else (split,):
            listing = self.root / f"{part}.txt"
            if not listing.is_file():
                raise DatasetError(listing, "split list is missing", f"add {part}.txt with one sample name per line")
            names = [Path(line.split()[0]).stem for line in listing.read_text().splitlines() if line.strip()]
            if not names:
                raise DatasetError(listing, "lists no samples", "fill the split list")
            self.names += names
        self.x_name = "depth" if depth_folder else "hha"
        wanted = ("rgb", self.x_name) if modalities is None else tuple(modalities)
        unknown = sorted(set(wanted) - {"rgb", self.x_name})
        if unknown or not wanted:
            raise ValueError(f"modalities must be among ('rgb', {self.x_name!r}), got {list(wanted)}")
        known = {"rgb": "RGB", self.x_name: depth_folder or "HHA"}
        self.folders = {k: v for k, v in known.items() if k in wanted}
        if with_mask:
            self.folders["mask"] = "Label"
        for key, folder in self.folders.items():
            if not (self.root / folder).is_dir():
                raise DatasetError(self.root / folder, f"folder for {key} is missing", "check the dataset layout")

    def __len__(self) -> int:
        return len(self.names)

    def locate(self, index: int) -> tuple[str, None]:
        """Sample ``index``'s id (its image name) and no georeferenced file (``decur embed``)."""
        return self.names[index], None

    def _find(self, folder: str, name: str) -> Path:
        for ext in IMAGE_EXTENSIONS:
            path = self.root / folder / f"{name}{ext}"
            if path.is_file():
                return path
        raise DatasetError(self.root / folder / name, "no image with this name", "check the split list")

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        name = self.names[index]
        sample: dict[str, Tensor] = {}
        paths: dict[str, Path] = {}
        for key in (k for k in ("rgb", self.x_name) if k in self.folders):
            paths[key] = self._find(self.folders[key], name)
            if key == "depth":
                sample[key] = torch.from_numpy(read_depth(paths[key], self.depth_encoding).astype(np.float32))[None]
            else:
                with Image.open(paths[key]) as img:
                    image = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
                sample[key] = torch.from_numpy(image).permute(2, 0, 1)
        if "mask" in self.folders:
            mask_path = self._find(self.folders["mask"], name)
            with Image.open(mask_path) as img:
                mask = torch.from_numpy(np.asarray(img).astype(np.int64))
            if mask.ndim != 2:
                raise DatasetError(
                    mask_path, f"label image has shape {tuple(mask.shape)}, expected H x W", "use indices"
                )
            if int(mask.max()) > self.num_classes:
                raise DatasetError(
                    mask_path, f"holds class {int(mask.max())} > {self.num_classes}", "check num_classes"
                )
            sample["mask"], paths["mask"] = mask, mask_path
        first = next(iter(paths))
        for key, path in paths.items():
            if sample[key].shape[-2:] != sample[first].shape[-2:]:
                size, expected = tuple(sample[key].shape[-2:]), tuple(sample[first].shape[-2:])
                raise DatasetError(path, f"{key} size {size} differs from the {first} image's {expected}", "align them")
        return sample


def pretrain_dataset(cfg: Any, **_: Any) -> Dataset[dict[str, Tensor]]:
    """SUN-RGBD pretraining pairs of ``cfg`` (a ``PretrainConfig``), views cropped per image.

    Images come in several sizes, so each view is cropped at its image's own size before batching.
    """
    d = cfg.data
    classes = dataset_spec(d.dataset).classes or 0
    return CroppedViews(
        RGBDSegmentation(str(d.root), d.split, num_classes=classes, with_mask=False),
        {m.name: m.augment for m in d.modalities},
        d.crop_size,
        d.crop_scale,
        d.share_crop,
    )


def transfer_dataset(run: Any, role: str, modalities: list[str]) -> RGBDSegmentation:
    """The ``role`` (train/test) split of a transfer run on SUN-RGBD or NYUv2, with masks."""
    split = run.train_split if role == "train" else run.test_split
    return RGBDSegmentation(str(run.root), split, dataset_spec(run.dataset).classes or 0, modalities=modalities)


def check_dataset(root: Path, split: str, options: dict[str, Any]) -> RGBDSegmentation:
    """Every pair and mask of ``split`` for ``decur data check``."""
    return RGBDSegmentation(root, split, num_classes=dataset_spec(options["dataset"]).classes or 0)
