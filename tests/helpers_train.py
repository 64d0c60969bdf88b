"""Small in-memory clip data for the training tests: bright discs on a dark, noisy background."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset


class DiscClips(Dataset):
    """Clips whose frames show one disc (label 1) that grows and shrinks; ED (frame 0) and ES (last) are labelled.

    Args:
        count: number of clips.
        size: frame side in pixels.
        frames: frames per clip.
        seed: random seed.
        spacing: (row, col) mm per pixel, or None (NaN, unknown).
    """

    def __init__(
        self, count: int, size: int = 32, frames: int = 4, seed: int = 0, spacing: tuple | None = (0.5, 0.5)
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.items = []
        for i in range(count):
            radius = size * (0.15 + 0.15 * torch.rand(frames, generator=g))
            centre = size / 2 + torch.randn(2, generator=g) * size / 12
            disc = ((yy[None] - centre[0]) ** 2 + (xx[None] - centre[1]) ** 2 < radius[:, None, None] ** 2).long()
            noise = 0.08 * torch.randn(frames, size, size, generator=g)
            image = (0.15 + 0.6 * disc.float() + noise).clamp(0, 1)[:, None]
            labelled = torch.zeros(frames, dtype=torch.bool)
            labelled[0] = labelled[-1] = True
            self.items.append(
                {
                    "frames": image,
                    "masks": disc * labelled[:, None, None],
                    "labelled": labelled,
                    "spacing": torch.tensor(spacing if spacing else (float("nan"),) * 2, dtype=torch.float32),
                    "meta": {"id": f"disc{seed}_{i}", "view": "4CH", "dataset": "discs", "ed_index": 0,
                             "es_index": frames - 1},
                }
            )  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class DiscDataModule(LightningDataModule):
    """Train / val / test disc clips (test = val set).

    Args:
        train: training clips.
        val: validation (and test) clips.
        size: frame side.
        frames: frames per clip.
        batch_size: clips per batch.
    """

    def __init__(self, train: int = 8, val: int = 4, size: int = 32, frames: int = 4, batch_size: int = 4) -> None:
        super().__init__()
        self.n_train, self.n_val, self.size, self.frames, self.batch_size = train, val, size, frames, batch_size
        self.labels = ("lv",)

    def train_dataloader(self) -> DataLoader:
        data = DiscClips(self.n_train, self.size, self.frames, seed=0)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(DiscClips(self.n_val, self.size, self.frames, seed=1), batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()
