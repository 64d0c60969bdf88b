"""LightningDataModule over CAMUS or EchoNet-Dynamic, with the synthetic generator as an out-of-the-box default.

The data folder comes from ``root``, else from the ``GDKVM_DATA`` environment variable; with ``synthetic=N > 0`` and
neither given, it is ``data/synthetic_<dataset>`` under the current folder. When ``synthetic > 0`` and that folder is
missing or empty, N synthetic patients (CAMUS) or videos (EchoNet) are generated there first (into a temporary
sibling folder that is renamed when complete, so an interrupted run never leaves a half-written data set). A
non-empty folder is never written to.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from gdkvm.data.camus import VIEWS, CamusDataset
from gdkvm.data.echonet import EchoNetDataset
from gdkvm.data.sampling import check_mode, label_lut
from gdkvm.data.transforms import ClipTransform
from gdkvm.errors import InputError

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("camus", "echonet")
ENV_VAR = "GDKVM_DATA"


def collate_clips(batch: list[dict[str, object]]) -> dict[str, object]:
    """Stack clip samples into a batch: frames [B, T, 1, H, W], masks [B, T, H, W], labelled [B, T], spacing [B, 2].

    ``meta`` becomes a dict of lists (strings) and tensors (numbers), as torch's default collate makes it.
    Refuses clips of different lengths or sizes (full-mode clips differ in length: use batch_size=1 there).
    """
    shapes = {tuple(sample["frames"].shape) for sample in batch}
    if len(shapes) > 1:
        lengths = sorted({shape[0] for shape in shapes})
        raise ValueError(
            f"cannot batch clips of different shapes {sorted(shapes)}: full-mode clips have one frame per source "
            f"frame (lengths {lengths}); use batch_size=1 with mode='full', or mode='clip' for fixed-length clips"
        )
    return default_collate(batch)


def resolve_root(dataset: str, root: str | Path | None, synthetic: int) -> Path:
    """The data folder: ``root``, else ``$GDKVM_DATA``, else ``data/synthetic_<dataset>`` when ``synthetic > 0``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    if synthetic > 0:
        return Path.cwd() / "data" / f"synthetic_{dataset}"
    raise InputError(
        f"no data folder for {dataset}: pass root=..., set the {ENV_VAR} environment variable, "
        "or use synthetic=N to generate a synthetic data set"
    )


def ensure_synthetic(dataset: str, root: Path, count: int, seed: int) -> bool:
    """Generate ``count`` synthetic patients/videos into ``root`` when it is missing or empty.

    Returns:
        True when data were generated, False when ``root`` already held files (it is then left untouched).
    """
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        return False
    from gdkvm.data.synthetic import synth_camus, synth_echonet

    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    logger.info(
        "generating %d synthetic %s %s into %s", count, dataset, "patients" if dataset == "camus" else "videos", root
    )
    try:
        if dataset == "camus":
            synth_camus(tmp, patients=count, seed=seed)
        else:
            synth_echonet(tmp, videos=count, seed=seed)
        if root.exists():
            root.rmdir()  # empty, checked above
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


class EchoDataModule(L.LightningDataModule):
    """CAMUS or EchoNet-Dynamic clips for training, validation, testing and prediction.

    Args:
        dataset: "camus" or "echonet".
        root: data folder; None reads ``$GDKVM_DATA``, then falls back to ``data/synthetic_<dataset>`` when
            ``synthetic > 0``.
        num_frames: frames per clip (clip mode), sampled uniformly ED..ES.
        size: output side length in pixels (paper: 256 CAMUS, 128 EchoNet).
        labels: CAMUS structures to segment, renumbered 1..C: ("lv",) or ("lv", "myo", "la"); EchoNet has LV only.
        views: CAMUS views ("2CH", "4CH"); ignored for EchoNet.
        batch_size: clips per batch (must be 1 when ``mode`` or ``eval_mode`` is "full").
        num_workers: DataLoader worker processes.
        augment: apply :class:`ClipTransform` to training clips.
        synthetic: N > 0 generates N synthetic patients/videos into the root when it is missing or empty.
        seed: seed of the synthetic data, the shuffling and the augmentation draws.
        mode: "clip" or "full" for the training split.
        eval_mode: "clip" or "full" for the validation, test and predict splits.

    Batches: ``frames`` [B, T, 1, H, W] float32, ``masks`` [B, T, H, W] int64, ``labelled`` [B, T] bool,
    ``spacing`` [B, 2] float32, ``meta`` dict of lists/tensors.
    """

    def __init__(
        self,
        dataset: str = "camus",
        root: str | None = None,
        num_frames: int = 10,
        size: int = 256,
        labels: Sequence[str] = ("lv",),
        views: Sequence[str] = VIEWS,
        batch_size: int = 8,
        num_workers: int = 2,
        augment: bool = True,
        synthetic: int = 0,
        seed: int = 0,
        mode: str = "clip",
        eval_mode: str = "clip",
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        label_lut(labels)
        if dataset == "echonet" and tuple(labels) != ("lv",):
            raise ValueError(f"EchoNet-Dynamic only has LV tracings; use labels=('lv',), got {tuple(labels)!r}")
        check_mode(mode)
        check_mode(eval_mode)
        if batch_size < 1 or (batch_size > 1 and "full" in (mode, eval_mode)):
            raise ValueError(f"batch_size must be >= 1, and 1 in full mode (clips differ in length); got {batch_size}")
        if synthetic < 0 or num_workers < 0:
            raise ValueError(f"synthetic and num_workers must be >= 0, got {synthetic} and {num_workers}")
        self.save_hyperparameters()
        self.dataset, self.root_arg, self.synthetic, self.seed = dataset, root, synthetic, seed
        self.num_frames, self.size, self.labels, self.views = num_frames, size, tuple(labels), tuple(views)
        self.batch_size, self.num_workers, self.augment = batch_size, num_workers, augment
        self.mode, self.eval_mode = mode, eval_mode
        self.datasets: dict[str, Dataset] = {}

    @property
    def num_classes(self) -> int:
        """Foreground classes C (the model predicts C + 1 channels, channel 0 background)."""
        return len(self.labels)

    @property
    def root(self) -> Path:
        """The resolved data folder (see :func:`resolve_root`)."""
        return resolve_root(self.dataset, self.root_arg, self.synthetic)

    def prepare_data(self) -> None:
        """Generate the synthetic data set when asked for and the folder is missing or empty (rank 0 only)."""
        if self.synthetic > 0:
            ensure_synthetic(self.dataset, self.root, self.synthetic, self.seed)

    def make_dataset(self, split: str, mode: str, augment: bool) -> Dataset:
        """One split as a :class:`CamusDataset` or :class:`EchoNetDataset`."""
        transform = ClipTransform(seed=self.seed) if augment else None
        common = {"split": split, "num_frames": self.num_frames, "size": self.size, "mode": mode}
        if self.dataset == "camus":
            return CamusDataset(self.root, views=self.views, labels=self.labels, transform=transform, **common)
        return EchoNetDataset(self.root, transform=transform, **common)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs ("fit", "validate", "test", "predict"; None builds all)."""
        self.prepare_data()  # no-op when the data exist (prepare_data already ran or the root is real data)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            if split not in self.datasets:
                train = split == "train"
                mode = self.mode if train else self.eval_mode
                self.datasets[split] = self.make_dataset(split, mode, augment=train and self.augment)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_clips,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
