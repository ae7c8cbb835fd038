"""Fixture generator for RGB-D segmentation data in the layout decur reads (CMX-style), made at test time.

    python -m tests.data.rgbd.data OUT_DIR

- ``sunrgbd/``: SUN-RGBD with images of two sizes (scaled-down versions of its 427 x 561 and 530 x 730 frames),
  ``RGB/<name>.jpg``, ``Depth/<name>.png`` (16-bit, millimetres rotated right by 3 bits as SUN RGB-D stores them),
  ``HHA/<name>.png``, ``Label/<name>.png`` (classes 1..37, 0 = unlabelled), ``train.txt`` / ``test.txt``;
- ``nyuv2/``: NYU-Depth v2 frames with raw Kinect depth as little-endian 16-bit PGM (``Depth/<name>.pgm``, 2047 =
  invalid), 40 classes.

Scenes are a floor plane and a box whose labels agree with the geometry, so segmentation has something to learn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SUN_SIZES = ((43, 56), (53, 73))
"""Height x width of the SUN-RGBD fixture frames: 1/10 of two real SUN-RGBD sizes."""
NYU_SIZE = (48, 64)


def _scene(h: int, w: int, rng: np.random.Generator, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB (uint8), depth in metres, label map (uint8, 0 = unlabelled) of a floor and a box."""
    ys, xs = np.mgrid[0:h, 0:w]
    depth = 1.0 + 4.0 * (1 - ys / h)  # the floor recedes towards the top
    label = np.full((h, w), 2, np.uint8)  # floor
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    box = (ys >= y0) & (ys < y0 + h // 3) & (xs >= x0) & (xs < x0 + w // 3)
    depth[box] = 1.5
    label[box] = rng.integers(3, classes + 1)
    label[:2] = 0  # an unlabelled border, as in the real annotations
    rgb = np.stack([label * 6, 255 - label * 5, (depth * 40).astype(np.uint8)], -1).astype(np.uint8)
    rgb = np.clip(rgb + rng.integers(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    return rgb, depth, label


def _write_pgm_little_endian(path: Path, raw: np.ndarray) -> None:
    h, w = raw.shape
    path.write_bytes(f"P5\n{w} {h}\n65535\n".encode() + raw.astype("<u2").tobytes())


def make_sunrgbd(root: Path, per_size: int = 3, seed: int = 0) -> Path:
    """SUN-RGBD fixture: ``per_size`` frames of each of :data:`SUN_SIZES` per split."""
    from decur.data.hha import NYU_CAMERA, depth_to_hha

    rng = np.random.default_rng(seed)
    for folder in ("RGB", "Depth", "HHA", "Label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        names = []
        for k, (h, w) in enumerate(SUN_SIZES):
            for i in range(per_size):
                name = f"{split}_{k}_{i:04d}"
                rgb, depth, label = _scene(h, w, rng, 37)
                Image.fromarray(rgb).save(root / "RGB" / f"{name}.jpg", quality=95)
                mm = np.round(depth * 1000).astype(np.uint16)
                stored = ((mm << 3) | (mm >> 13)).astype(np.uint16)  # SUN RGB-D: rotated left by 3 bits on disk
                Image.fromarray(stored).save(root / "Depth" / f"{name}.png")
                Image.fromarray(depth_to_hha(depth, NYU_CAMERA / 10 * np.array([[1], [1], [10]]))).save(
                    root / "HHA" / f"{name}.png"
                )
                Image.fromarray(label).save(root / "Label" / f"{name}.png")
                names.append(name)
        (root / f"{split}.txt").write_text("".join(f"RGB/{n}.jpg Label/{n}.png\n" for n in names))
    return root


def make_nyuv2(root: Path, per_split: int = 3, seed: int = 1) -> Path:
    """NYU-Depth v2 fixture with raw Kinect disparity (PGM) and 40 classes; HHA made by ``decur data hha``."""
    rng = np.random.default_rng(seed)
    for folder in ("RGB", "Depth", "Label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        names = []
        for i in range(per_split):
            name = f"{split}_{i:04d}"
            rgb, depth, label = _scene(*NYU_SIZE, rng, 40)
            raw = np.clip(1092.5 - 351.3 / depth, 0, 2046).round().astype(np.uint16)
            raw[0, :4] = 2047  # invalid readings
            _write_pgm_little_endian(root / "Depth" / f"{name}.pgm", raw)
            Image.fromarray(rgb).save(root / "RGB" / f"{name}.png")
            Image.fromarray(label).save(root / "Label" / f"{name}.png")
            names.append(name)
        (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1])
    make_sunrgbd(out / "sunrgbd")
    make_nyuv2(out / "nyuv2")
    print(f"wrote {out / 'sunrgbd'} and {out / 'nyuv2'}")
