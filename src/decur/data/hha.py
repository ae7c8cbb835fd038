"""Depth → HHA encoding (Gupta et al., "Learning Rich Features from RGB-D Images", ECCV 2014).

Three uint8 channels per pixel, in the order the RGB-D segmentation codes read them:
  1. horizontal disparity ``31000 / depth_cm`` (depth clamped to ≥ 100 cm);
  2. height above the lowest point of the scene, in cm, along the estimated gravity direction;
  3. angle between the local surface normal and gravity, in degrees, stored as ``angle + 128 − 90``.

Steps, following the published algorithm: back-project the depth to a point cloud with the camera matrix; fit a
local plane around every pixel (square windows of half-width 3 for the normals and 10 for the gravity estimate,
least squares on box-filtered moments); estimate gravity as the direction most parallel to "horizontal" normals
and most orthogonal to "vertical" ones, refined over two angle thresholds (45°, 15°) starting from the camera's
y axis; rotate the cloud so gravity is vertical; heights relative to the lowest point, or to −130 cm when nothing lies
lower than −90 cm (the published rule). Values
are rounded and clipped to [0, 255].
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

NYU_CAMERA = np.array(
    [[518.85790117450188, 0, 325.58244941119034], [0, 519.46961112127485, 253.73616633400465], [0, 0, 1]]
)
"""Colour camera matrix of NYU Depth v2 (the NYU toolbox's ``getCameraParam('color')``)."""


def point_cloud(depth_cm: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """``H x W x 3`` camera-frame points (cm) from depth (cm); pixel centres at 1-based coordinates."""
    h, w = depth_cm.shape
    xx, yy = np.meshgrid(np.arange(1, w + 1), np.arange(1, h + 1))
    x = (xx - camera[0, 2]) * depth_cm / camera[0, 0]
    y = (yy - camera[1, 2]) * depth_cm / camera[1, 1]
    return np.stack([x, y, depth_cm], axis=-1)


def surface_normals(points: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """Unit normals of least-squares planes over ``(2 radius + 1)^2`` windows, facing the camera (NaN if none)."""
    size = 2 * radius + 1
    p = np.where(valid[..., None], points, 0.0)
    count = uniform_filter(valid.astype(np.float64), size, mode="constant")
    mean = (
        np.stack([uniform_filter(p[..., i], size, mode="constant") for i in range(3)], -1)
        / np.maximum(count, 1e-12)[..., None]
    )
    cov = np.empty((*points.shape[:2], 3, 3))
    for i in range(3):
        for j in range(i, 3):
            m = uniform_filter(p[..., i] * p[..., j], size, mode="constant") / np.maximum(count, 1e-12)
            cov[..., i, j] = cov[..., j, i] = m - mean[..., i] * mean[..., j]
    _, vectors = np.linalg.eigh(cov)
    normals = vectors[..., :, 0]  # smallest eigenvalue
    facing = np.sign(-(normals * points).sum(-1, keepdims=True))
    normals = normals * np.where(facing == 0, 1, facing)
    normals[count * size * size < 3] = np.nan
    return normals


def gravity_direction(
    normals: np.ndarray, thresholds_deg: tuple[float, ...] = (45, 15), iterations: int = 5
) -> np.ndarray:
    """Unit gravity ("down" in camera coordinates, y axis) estimate from surface normals."""
    n = normals.reshape(-1, 3)
    n = n[np.isfinite(n).all(1)]
    y = np.array([0.0, 1.0, 0.0])
    for threshold in np.deg2rad(thresholds_deg):
        for _ in range(iterations):
            sim = n @ y
            parallel = n[np.abs(sim) > np.cos(threshold)]
            orthogonal = n[np.abs(sim) < np.sin(threshold)]
            a = orthogonal.T @ orthogonal - parallel.T @ parallel
            values, vectors = np.linalg.eigh(a)
            new = vectors[:, np.argmin(values)]
            y = new * np.sign(new @ y)
    return y


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation matrix turning unit vector ``a`` onto unit vector ``b`` (Rodrigues)."""
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def depth_to_hha(depth_m: np.ndarray, camera: np.ndarray = NYU_CAMERA, valid: np.ndarray | None = None) -> np.ndarray:
    """HHA image ``H x W x 3`` uint8 (disparity, height, angle) from depth in metres.

    Args:
        depth_m: Depth map in metres (filled / inpainted for best results).
        camera: 3 x 3 intrinsic matrix of the depth-aligned camera.
        valid: Pixels with a measurement (default: depth > 0).

    """
    depth_cm = depth_m.astype(np.float64) * 100
    valid = depth_cm > 0 if valid is None else valid
    points = point_cloud(depth_cm, camera)
    normals = surface_normals(points, valid, radius=3)
    down = gravity_direction(surface_normals(points, valid, radius=10))
    rotation = _rotation_between(down, np.array([0.0, 1.0, 0.0]))
    height = -(points @ rotation.T)[..., 1]
    lowest = float(np.min(height))
    lowest = lowest if lowest <= -90 else -130.0  # the published rule: at least 1.3 m below the camera
    height = height - lowest
    # camera-facing normal vs "up" (= -down): 0 deg for floors, 90 for walls, 180 for ceilings
    cos = np.clip(-(normals * down).sum(-1), -1, 1)
    angle = np.degrees(np.arccos(cos))
    angle[~np.isfinite(angle)] = 180
    disparity = 31000 / np.maximum(depth_cm, 100)
    hha = np.stack([disparity, height, angle + 128 - 90], axis=-1)
    return np.clip(np.rint(hha), 0, 255).astype(np.uint8)
