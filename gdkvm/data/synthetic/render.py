"""Render one apical view of a :class:`HeartShape` as a B-mode sector (fan) video and its label masks.

The probe sits at the top centre of the image; a pixel ``(row, col)`` is at lateral ``x`` and depth ``y`` (mm) from
it, and belongs to the fan when its range is below ``depth`` and its beam angle below ``half_angle``. The heart frame
(``u`` across the view plane, ``z`` along the long axis from the apex) is placed by the probe pose: apex position and
tilt of the long axis against the beam axis. Labels come from the same geometry as the image, so masks match the
image exactly (up to the point-spread blur of the image). Appearance: tissue echogenicity (dark cavities, bright
myocardium and pericardium, grey surroundings with a smooth texture, right heart in the 4CH view), multiplicative
Rayleigh speckle correlated in space and time, exponential attenuation with depth, random gain and near-field clutter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gdkvm.data.synthetic.geometry import LABEL_LA, LABEL_LV, LABEL_MYO, HeartShape, Section

# Echogenicity (before speckle, gain and attenuation) of each structure.
_TISSUE, _MYO, _BLOOD, _PERICARDIUM, _RIGHT_WALL = 0.36, 0.72, 0.05, 1.0, 0.55


@dataclass(frozen=True)
class Scan:
    """Image grid, probe and pose of one view.

    Attributes:
        height: image rows.
        width: image columns.
        spacing: (row, col) mm per pixel.
        depth: fan depth (mm).
        half_angle: fan half opening angle (rad).
        apex_x: lateral position (mm) of the LV apex from the probe (positive = right of the image).
        apex_y: depth (mm) of the LV apex.
        tilt: angle (rad) between the LV long axis and the vertical beam axis.
        theta: angle (rad) of the view plane about the LV long axis (4CH and 2CH differ by about 60 deg).
        gain: global gain (1 = nominal).
        attenuation: intensity attenuation per mm of depth (1/mm).
        clutter: near-field haze level, 0 (clean) to about 1 (poor image).
        right_heart: draw a right ventricle and atrium next to the LV and LA (4CH view).
    """

    height: int
    width: int
    spacing: tuple[float, float]
    depth: float
    half_angle: float
    apex_x: float
    apex_y: float
    tilt: float
    theta: float
    gain: float = 1.0
    attenuation: float = 0.004
    clutter: float = 0.2
    right_heart: bool = False

    def plane_coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Heart-frame coordinates of every pixel.

        Returns:
            ``u`` [H, W] float32 and ``z`` [H, W] float32 (mm), ``depth`` [H, W] float32 range from the probe (mm),
            and ``fan`` [H, W] bool (inside the sector).
        """
        rows = np.arange(self.height, dtype=np.float32)[:, None] * self.spacing[0]
        cols = (np.arange(self.width, dtype=np.float32)[None, :] - (self.width - 1) / 2.0) * self.spacing[1]
        x, y = np.broadcast_to(cols, (self.height, self.width)), np.broadcast_to(rows, (self.height, self.width))
        rng_mm = np.hypot(x, y)
        fan = (rng_mm <= self.depth) & (np.abs(np.arctan2(x, y)) <= self.half_angle)
        rx, ry = x - self.apex_x, y - self.apex_y
        s, c = math.sin(self.tilt), math.cos(self.tilt)
        z = rx * s + ry * c
        u = rx * c - ry * s
        return u.astype(np.float32), z.astype(np.float32), rng_mm.astype(np.float32), fan

    def to_mm(self, u: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heart-frame points ``u``, ``z`` [...] (mm) to probe coordinates ``(x, y)`` [...] (lateral, depth; mm)."""
        s, c = math.sin(self.tilt), math.cos(self.tilt)
        return self.apex_x + u * c + z * s, self.apex_y - u * s + z * c

    def to_pixels(self, u: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heart-frame points ``u``, ``z`` [...] (mm) to image ``(col, row)`` [...] float pixel coordinates."""
        x, y = self.to_mm(u, z)
        return x / self.spacing[1] + (self.width - 1) / 2.0, y / self.spacing[0]


def _ellipse(u: np.ndarray, z: np.ndarray, cu: float, cz: float, su: float, sz: float) -> np.ndarray:
    return ((u - cu) / su) ** 2 + ((z - cz) / sz) ** 2 <= 1.0


def echogenicity(
    sec: Section, u: np.ndarray, z: np.ndarray, labels: np.ndarray, right_heart: bool, probe: tuple[float, float]
) -> np.ndarray:
    """Noise-free tissue brightness of one frame.

    The myocardium reflects less where the beam runs along the wall (lateral and septal walls of apical views, as in
    real images) and most where it hits the wall head-on (apex).

    Args:
        sec: the heart section at this instant.
        u: [H, W] across-plane coordinate (mm).
        z: [H, W] long-axis coordinate (mm).
        labels: [H, W] uint8 labels of ``sec`` at ``u``, ``z``.
        right_heart: add RV and RA (4CH view).
        probe: (u, z) of the probe in the heart frame (mm).

    Returns:
        [H, W] float32 brightness in [0, 1].
    """
    out = np.full(labels.shape, _TISSUE, dtype=np.float32)
    free = labels == 0
    zc = sec.lv_c
    rim = _ellipse(u, z, 0.0, zc, sec.outer_u + 2.5, sec.outer_c + 2.5) & (z <= sec.base)
    out[rim & free] = _PERICARDIUM
    if right_heart:
        rv_u, rv_c = 0.45 * sec.lv_u, 0.8 * sec.lv_c
        rv_x = -(sec.outer_u + 1.0 + rv_u)
        rv_wall = _ellipse(u, z, rv_x, 1.1 * zc, rv_u + 4.0, rv_c + 4.0) & free & ~rim
        out[rv_wall] = _RIGHT_WALL
        out[_ellipse(u, z, rv_x, 1.1 * zc, rv_u, rv_c) & free & ~rim] = _BLOOD
        ra = _ellipse(u, z, -(sec.la_u * 1.8 + 2.0), sec.la_z, 0.8 * sec.la_u, 0.9 * sec.la_c) & free
        out[ra & (z > sec.base)] = _BLOOD
    myo = labels == LABEL_MYO
    mu, mz = u[myo], z[myo]
    nu, nz = mu / sec.outer_u**2, (mz - zc) / sec.outer_c**2  # wall normal (gradient of the epicardial ellipse)
    bu, bz = mu - probe[0], mz - probe[1]  # beam direction
    cos = np.abs(nu * bu + nz * bz) / (np.hypot(nu, nz) * np.hypot(bu, bz) + 1e-9)
    out[myo] = _MYO * (0.4 + 0.6 * np.sqrt(cos))
    out[(labels == LABEL_LV) | (labels == LABEL_LA)] = _BLOOD
    return out


class Speckle:
    """Fully developed speckle: magnitude of a smoothed complex Gaussian field, AR(1)-correlated over frames.

    The field is drawn on a grid ``factor`` times coarser than the image (speckle grains span several pixels
    anyway) and its magnitude is upsampled bilinearly, which keeps large images fast.

    Args:
        rng: the generator.
        shape: (H, W) of the frames.
        sigma: (row, col) Gaussian smoothing in image pixels (speckle grain; lateral is usually wider).
        rho: correlation of the complex field between consecutive frames, in [0, 1).
    """

    def __init__(
        self, rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float], rho: float = 0.6
    ) -> None:
        self.factor = int(np.clip(round(max(sigma) / 1.5), 1, 3))
        self.rng, self.shape, self.rho = rng, shape, rho
        self.grid = (-(-shape[0] // self.factor), -(-shape[1] // self.factor))
        self.sigma = (max(0.5, sigma[0] / self.factor), max(0.5, sigma[1] / self.factor))
        self.field = self._fresh()

    def _fresh(self) -> np.ndarray:
        noise = self.rng.standard_normal((2, *self.grid), dtype=np.float32)
        out = np.stack([cv2.GaussianBlur(n, (0, 0), sigmaX=self.sigma[1], sigmaY=self.sigma[0]) for n in noise])
        return out * np.float32(1.0 / math.sqrt(float(np.mean(out[0] ** 2)) * 2.0 + 1e-12))

    def next(self) -> np.ndarray:
        """The next frame's speckle: [H, W] float32, Rayleigh distributed with mean about 1."""
        self.field = np.float32(self.rho) * self.field + np.float32(math.sqrt(1.0 - self.rho**2)) * self._fresh()
        mag = cv2.magnitude(self.field[0], self.field[1])
        if self.factor > 1:
            mag = cv2.resize(mag, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)
        return mag * np.float32(1.0 / (float(mag.mean()) + 1e-12))


def smooth_texture(rng: np.random.Generator, shape: tuple[int, int], cell: int = 24) -> np.ndarray:
    """Slowly varying multiplicative texture [H, W] float32 around 1 (about +-25 %)."""
    coarse = rng.standard_normal((shape[0] // cell + 3, shape[1] // cell + 3)).astype(np.float32)
    return 1.0 + 0.25 * cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(-2, 2) / 2


def render_view(
    rng: np.random.Generator, heart: HeartShape, scan: Scan, fractions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Render the view ``scan`` of ``heart`` at the volume fractions of each frame.

    Args:
        rng: the generator (speckle, texture).
        heart: the 3D heart.
        scan: grid, probe and pose.
        fractions: [T] float LV volume / EDV per frame.

    Returns:
        ``images`` [T, H, W] uint8 (0 outside the fan) and ``masks`` [T, H, W] uint8 CAMUS labels (0 outside the fan).
    """
    u, z, rng_mm, fan = scan.plane_coords()
    s, c = math.sin(scan.tilt), math.cos(scan.tilt)
    probe = (-scan.apex_x * c + scan.apex_y * s, -scan.apex_x * s - scan.apex_y * c)
    shape = (scan.height, scan.width)
    texture = smooth_texture(rng, shape)
    speckle_sigma = (max(0.5, 0.45 / scan.spacing[0]), max(0.7, 1.0 / scan.spacing[1]))
    speckle = Speckle(rng, shape, speckle_sigma)
    psf = (max(0.4, 0.5 / scan.spacing[0]), max(0.5, 0.9 / scan.spacing[1]))
    gain = np.float32(scan.gain) * np.exp(-scan.attenuation * rng_mm)
    haze = (scan.clutter * 0.35 * np.exp(-rng_mm / 25.0)).astype(np.float32)
    images = np.empty((len(fractions), *shape), dtype=np.uint8)
    masks = np.empty((len(fractions), *shape), dtype=np.uint8)
    for t, fraction in enumerate(np.asarray(fractions, dtype=np.float64)):
        sec = heart.section(scan.theta, float(fraction))
        labels = sec.labels(u, z)
        echo = echogenicity(sec, u, z, labels, scan.right_heart, probe)
        echo = np.where(labels == 0, echo * texture, echo)
        echo = cv2.GaussianBlur(echo, (0, 0), sigmaX=psf[1], sigmaY=psf[0])
        value = (echo + haze) * speckle.next() * gain
        frame = np.clip(value * 255.0, 0.0, 255.0).astype(np.uint8)
        frame[~fan] = 0
        labels[~fan] = 0
        images[t], masks[t] = frame, labels
    return images, masks
