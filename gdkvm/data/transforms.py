"""Clip augmentation with albumentations 2.x: one random draw per clip, applied identically to every frame and mask.

The frames go through albumentations' multi-image API (``images=`` / ``masks=``), which draws the parameters once
and applies them to every frame of the stack: the same gamma, contrast, noise field, scale and rotation for all.
"""

from __future__ import annotations

import logging
import os

import albumentations as A
import cv2
import numpy as np
import torch

logger = logging.getLogger(__name__)


class ClipTransform:
    """Random photometric and geometric augmentation of a clip sample (the shared sample dict).

    Args:
        gamma: range of the gamma exponent (``RandomGamma``), e.g. (0.8, 1.25).
        brightness: maximum additive brightness change, in intensity units of [0, 1] images.
        contrast: maximum relative contrast change.
        noise_std: range of the Gaussian noise standard deviation, in intensity units.
        scale: range of the isotropic zoom factor (> 1 magnifies); ``spacing`` is divided by the drawn factor.
        rotate: maximum absolute rotation in degrees (spacing is left as is; keep this small).
        p: probability of applying each of the photometric / geometric transforms.
        seed: seed of the random draws in the main process; None draws fresh entropy. In a DataLoader worker the
            generator is re-seeded once from the worker's torch seed (``get_worker_info().seed``, which differs per
            worker and per epoch and follows the loader's generator), so workers never repeat each other's draws.

    Call with a sample dict holding ``frames`` [T, 1, H, W] float32 in [0, 1], ``masks`` [T, H, W] int64 and
    ``spacing`` [2] float32; returns a new dict with the same keys, shapes and dtypes.
    """

    def __init__(
        self,
        gamma: tuple[float, float] = (0.8, 1.25),
        brightness: float = 0.1,
        contrast: float = 0.2,
        noise_std: tuple[float, float] = (0.0, 0.03),
        scale: tuple[float, float] = (0.9, 1.1),
        rotate: float = 10.0,
        p: float = 0.8,
        seed: int | None = None,
    ) -> None:
        if not (0 < gamma[0] <= gamma[1]) or not (0 < scale[0] <= scale[1]):
            raise ValueError(f"gamma and scale must be positive (low, high) ranges, got {gamma} and {scale}")
        if not (0.0 <= noise_std[0] <= noise_std[1] <= 1.0):
            raise ValueError(f"noise_std must be a range inside [0, 1], got {noise_std}")
        self.seed = seed
        self._worker_pid: int | None = None
        self.compose = A.Compose(
            [
                A.Affine(
                    scale=scale,
                    rotate=(-rotate, rotate),
                    keep_ratio=True,
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    fill_mask=0,
                    p=p,
                ),
                A.RandomGamma(gamma_limit=(gamma[0] * 100, gamma[1] * 100), p=p),
                A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast, p=p),
                A.GaussNoise(std_range=noise_std, mean_range=(0.0, 0.0), p=p),
            ],
            seed=seed,
            save_applied_params=True,
        )

    def _reseed_in_worker(self) -> None:
        """Give every DataLoader worker process its own random stream (forked workers share the parent's)."""
        info = torch.utils.data.get_worker_info()
        if info is None or self._worker_pid == os.getpid():
            return
        self._worker_pid = os.getpid()
        self.compose.set_random_seed(int(info.seed % (2**32)))

    def __call__(self, sample: dict[str, object]) -> dict[str, object]:
        self._reseed_in_worker()
        frames = sample["frames"]
        masks = sample["masks"]
        if frames.ndim != 4 or frames.shape[1] != 1 or masks.shape != (frames.shape[0], *frames.shape[2:]):
            raise ValueError(f"expected frames [T, 1, H, W] and masks [T, H, W], got {frames.shape} / {masks.shape}")
        # uint8 in and out: albumentations then uses lookup tables for gamma/contrast (about 5x faster than float32
        # on a 10-frame 256 px clip); the loaders' sources are 8-bit, so nothing is lost but rounding.
        images = np.rint(frames.numpy().transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
        out = self.compose(images=images, masks=masks.numpy().astype(np.uint8))
        zoom = 1.0
        for name, params in out["applied_transforms"]:
            if name == "Affine":
                zoom = float(params["scale"]["x"])
        result = dict(sample)
        result["frames"] = torch.from_numpy(out["images"].transpose(0, 3, 1, 2).astype(np.float32) * (1.0 / 255.0))
        result["masks"] = torch.from_numpy(np.ascontiguousarray(out["masks"], dtype=np.int64))  # numpy: torch's
        # uint8 -> int64 cast costs ~10 ms here when its thread pool is cold
        result["spacing"] = sample["spacing"] / zoom
        return result

    def __repr__(self) -> str:
        return f"ClipTransform(seed={self.seed}, transforms={[type(t).__name__ for t in self.compose.transforms]})"
