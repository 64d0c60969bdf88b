"""LightningDataModule over a CAMUS-format and an EchoNet-format set at once: one image size, LV only.

Training draws from the concatenation of both training splits (every clip once per epoch, shuffled), or, with
``camus_fraction``, samples with replacement so that a fraction ``camus_fraction`` of the clips comes from CAMUS.
Validation, test and prediction run over both sets' split in one loader (CAMUS first); `gdkvm.lit.GDKVMSystem`
reports every metric over all clips (``val/dice``) and per source (``val/camus/dice``, ``val/echonet/dice``), from
the ``dataset`` field of each clip's meta.

Both sources give the same batch contract: ``frames`` [B, T, 1, S, S] float32 in [0, 1], ``masks`` [B, T, S, S]
int64 (1 = LV), ``labelled`` [B, T] bool, ``spacing`` [B, 2] float32 (row, col) mm and ``meta``. They differ only in
values: CAMUS 2023 half sequences are labelled on every frame and have a known spacing; EchoNet clips are labelled on
the ED and ES frames only and have no spacing (NaN). ``meta`` keeps only the keys both loaders write
(:data:`COMMON_META`), so clips of both sources collate into one batch.

Each root is ``camus_root`` / ``echonet_root``, else ``data/synthetic_camus`` / ``data/synthetic_echonet`` under the
current folder when the matching ``*_synthetic`` count is > 0. A missing or empty root with a count > 0 is filled
with that many synthetic patients / videos first (:func:`gdkvm.data.datamodule.ensure_synthetic`); a non-empty
folder is never written to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, WeightedRandomSampler

from gdkvm.data.camus import VIEWS, CamusDataset
from gdkvm.data.datamodule import collate_clips, ensure_synthetic
from gdkvm.data.echonet import EchoNetDataset
from gdkvm.data.sampling import check_size
from gdkvm.data.transforms import ClipTransform
from gdkvm.errors import InputError

logger = logging.getLogger(__name__)

#: The two sources, in the order their clips appear in the evaluation loaders.
SOURCES: tuple[str, ...] = ("camus", "echonet")

#: Meta keys written by both the CAMUS and the EchoNet loader; batches of the mixed module carry only these.
COMMON_META: tuple[str, ...] = (
    "id", "dataset", "view", "ed_index", "es_index", "ef", "fps", "orig_height", "orig_width", "num_source_frames",
)  # fmt: skip


def collate_mixed(batch: list[dict[str, object]]) -> dict[str, object]:
    """:func:`collate_clips` of samples from either source, after cutting each ``meta`` to :data:`COMMON_META`.

    Args:
        batch: samples with ``frames`` [T, 1, S, S], ``masks`` [T, S, S], ``labelled`` [T], ``spacing`` [2], ``meta``.

    Returns:
        ``frames`` [B, T, 1, S, S], ``masks`` [B, T, S, S], ``labelled`` [B, T], ``spacing`` [B, 2] and ``meta`` (a dict
        of lists for strings, tensors [B] for numbers).
    """
    trimmed = []
    for sample in batch:
        meta = sample["meta"]
        missing = [key for key in COMMON_META if key not in meta]
        if missing:
            raise KeyError(f"clip meta lacks {missing} (has {sorted(meta)})")
        trimmed.append({**sample, "meta": {key: meta[key] for key in COMMON_META}})
    return collate_clips(trimmed)


def source_root(dataset: str, root: str | None, synthetic: int) -> Path:
    """The folder of one source: ``root``, else ``data/synthetic_<dataset>`` under the current folder when
    ``synthetic > 0`` (the ``GDKVM_DATA`` variable is not read: it cannot name two folders)."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    if synthetic > 0:
        return Path.cwd() / "data" / f"synthetic_{dataset}"
    raise InputError(f"no {dataset} folder for the mixed data: pass {dataset}_root=... or {dataset}_synthetic=N")


def mixing_weights(lengths: Sequence[int], fractions: Sequence[float]) -> torch.Tensor:
    """Per-clip sampling weights for a concatenation of sets, so that a draw comes from set i with probability
    ``fractions[i]`` (each clip of a set equally likely).

    Args:
        lengths: clips per set (all > 0).
        fractions: draw probability per set (>= 0, summing to 1).

    Returns:
        [sum(lengths)] float64 weights, summing to 1.
    """
    if len(lengths) != len(fractions) or min(lengths) < 1:
        raise ValueError(f"need one fraction per non-empty set, got lengths {list(lengths)}, fractions {fractions}")
    return torch.cat([torch.full((n,), f / n, dtype=torch.float64) for n, f in zip(lengths, fractions)])


class MixedEchoDataModule(L.LightningDataModule):
    """CAMUS-format and EchoNet-format clips together, at one size, with the LV as the only class.

    Args:
        camus_root: CAMUS folder (2023 or 2019 layout); None means ``data/synthetic_camus`` when
            ``camus_synthetic > 0``.
        echonet_root: EchoNet-Dynamic folder; None means ``data/synthetic_echonet`` when ``echonet_synthetic > 0``.
        camus_synthetic: N > 0 generates N synthetic CAMUS patients (2 views each) into a missing or empty root.
        echonet_synthetic: N > 0 generates N synthetic EchoNet videos into a missing or empty root.
        num_frames: frames per clip, sampled uniformly ED..ES.
        size: output side length in pixels for both sources.
        views: CAMUS views used ("2CH", "4CH").
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        augment: apply :class:`ClipTransform` to training clips of both sources.
        camus_fraction: None trains on the plain concatenation (each clip once per epoch); a value in [0, 1] draws
            each training clip from CAMUS with that probability (with replacement, epochs as long as the
            concatenation).
        seed: seed of the synthetic data, the shuffling and the augmentation draws.
        cache_dir: folder for decoded, resized CAMUS cases (see :class:`CamusDataset`); None caches nothing.
        synth_workers: processes generating synthetic data (the files are the same for any number).

    Batches: ``frames`` [B, T, 1, H, W] float32, ``masks`` [B, T, H, W] int64, ``labelled`` [B, T] bool,
    ``spacing`` [B, 2] float32 (NaN for EchoNet clips), ``meta`` with the :data:`COMMON_META` keys.
    """

    def __init__(
        self,
        camus_root: str | None = None,
        echonet_root: str | None = None,
        camus_synthetic: int = 0,
        echonet_synthetic: int = 0,
        num_frames: int = 10,
        size: int = 112,
        views: Sequence[str] = VIEWS,
        batch_size: int = 8,
        num_workers: int = 2,
        augment: bool = True,
        camus_fraction: float | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        synth_workers: int = 1,
    ) -> None:
        super().__init__()
        check_size(size)
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (ED and ES), got {num_frames}")
        if camus_synthetic < 0 or echonet_synthetic < 0 or num_workers < 0 or synth_workers < 1 or batch_size < 1:
            raise ValueError(
                "camus_synthetic, echonet_synthetic and num_workers must be >= 0, synth_workers and batch_size >= 1; "
                f"got {camus_synthetic}, {echonet_synthetic}, {num_workers}, {synth_workers}, {batch_size}"
            )
        if camus_fraction is not None and not 0.0 <= camus_fraction <= 1.0:
            raise ValueError(f"camus_fraction must be None or in [0, 1], got {camus_fraction}")
        bad_views = [v for v in views if v not in VIEWS]
        if isinstance(views, str) or not views or bad_views:
            raise ValueError(f"views must be a non-empty list of {VIEWS}, got {views!r}")
        self.save_hyperparameters()
        self.camus_root_arg, self.echonet_root_arg = camus_root, echonet_root
        self.counts = {"camus": camus_synthetic, "echonet": echonet_synthetic}
        self.num_frames, self.size, self.views = num_frames, size, tuple(views)
        self.batch_size, self.num_workers, self.augment = batch_size, num_workers, augment
        self.camus_fraction, self.seed, self.cache_dir = camus_fraction, seed, cache_dir
        self.synth_workers = synth_workers
        self.parts: dict[str, dict[str, Dataset]] = {}
        self.datasets: dict[str, ConcatDataset] = {}

    @property
    def labels(self) -> tuple[str, ...]:
        """The segmented structures: the LV only (EchoNet has no other tracing)."""
        return ("lv",)

    @property
    def num_classes(self) -> int:
        """Foreground classes C = 1 (the model predicts 2 channels: background, LV)."""
        return 1

    def roots(self) -> dict[str, Path]:
        """Resolved folder per source (see :func:`source_root`)."""
        args = {"camus": self.camus_root_arg, "echonet": self.echonet_root_arg}
        return {name: source_root(name, args[name], self.counts[name]) for name in SOURCES}

    def prepare_data(self) -> None:
        """Generate each synthetic set whose count is > 0 and whose folder is missing or empty (rank 0 only)."""
        for name, root in self.roots().items():
            if self.counts[name] > 0:
                ensure_synthetic(name, root, self.counts[name], self.seed, workers=self.synth_workers)

    def make_dataset(self, source: str, split: str, augment: bool) -> Dataset:
        """One split of one source, clip mode, at ``size`` px, LV only."""
        transform = ClipTransform(seed=self.seed + SOURCES.index(source)) if augment else None
        root = self.roots()[source]
        common = {"split": split, "num_frames": self.num_frames, "size": self.size, "mode": "clip"}
        if source == "camus":
            return CamusDataset(
                root, views=self.views, labels=("lv",), transform=transform, cache_dir=self.cache_dir, **common
            )
        return EchoNetDataset(root, transform=transform, **common)

    def setup(self, stage: str | None = None) -> None:
        """Build the splits a stage needs ("fit", "validate", "test", "predict"; None builds all)."""
        self.prepare_data()  # no-op when the data exist
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            if split in self.datasets:
                continue
            augment = split == "train" and self.augment
            self.parts[split] = {name: self.make_dataset(name, split, augment) for name in SOURCES}
            self.datasets[split] = ConcatDataset([self.parts[split][name] for name in SOURCES])
            sizes = ", ".join(f"{len(d)} {name}" for name, d in self.parts[split].items())
            logger.info("mixed %s split: %s clips", split, sizes)

    def sizes(self, split: str) -> dict[str, int]:
        """Clips per source in ``split`` (built on demand)."""
        if split not in self.parts:
            self.setup(None)
        return {name: len(d) for name, d in self.parts[split].items()}

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        data = self.datasets[split]
        generator = torch.Generator().manual_seed(self.seed)
        sampler = None
        if train and self.camus_fraction is not None:
            lengths = [len(self.parts[split][name]) for name in SOURCES]
            weights = mixing_weights(lengths, [self.camus_fraction, 1.0 - self.camus_fraction])
            sampler = WeightedRandomSampler(weights, num_samples=len(data), replacement=True, generator=generator)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_mixed,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
