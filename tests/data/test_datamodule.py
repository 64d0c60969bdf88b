"""EchoDataModule: batch shapes for both data sets, root resolution, synthetic generation, full-mode batching."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from gdkvm.data.datamodule import EchoDataModule, collate_clips, ensure_synthetic, resolve_root
from gdkvm.errors import InputError
from tests.data.test_camus import write_camus_2023
from tests.data.test_echonet import tracing_rows, write_echonet

SPLIT = {"training": ["patient0001", "patient0002", "patient0003"], "validation": ["patient0004"],
         "testing": ["patient0005"]}  # fmt: skip


def _camus(root: Path) -> Path:
    frames = {f"patient000{i}": 4 + i for i in range(1, 6)}
    write_camus_2023(root, frames, reversed_={"patient0002"}, split=SPLIT)
    return root


def _echonet(root: Path) -> Path:
    big, small = tracing_rows(18), tracing_rows(10)
    videos = [{"name": f"V{i}", "n": 16 + i, "split": s, "tracings": {2 + i: big, 12: small}}
              for i, s in enumerate(["TRAIN", "TRAIN", "TRAIN", "VAL", "TEST"])]  # fmt: skip
    return write_echonet(root, videos)


def test_camus_batches(tmp_path: Path) -> None:
    dm = EchoDataModule("camus", root=str(_camus(tmp_path / "c")), num_frames=4, size=32, labels=("lv", "myo", "la"),
                        batch_size=3, num_workers=0, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (3, 4, 1, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["masks"].shape == (3, 4, 32, 32) and batch["masks"].dtype == torch.int64
    assert batch["labelled"].shape == (3, 4) and batch["spacing"].shape == (3, 2)
    assert len(batch["meta"]["id"]) == 3 and batch["meta"]["ed_index"].tolist() == [0, 0, 0]
    assert int(batch["masks"].max()) <= 3 and dm.num_classes == 3
    val = next(iter(dm.val_dataloader()))
    assert val["frames"].shape[0] == 2  # patient0004, two views
    dm.setup("test")
    assert len(dm.datasets["test"]) == 2
    assert len(list((tmp_path / "cache").glob("*.npz"))) >= 5  # the decoded cache was used


def test_echonet_batches_with_workers(tmp_path: Path) -> None:
    dm = EchoDataModule("echonet", root=str(_echonet(tmp_path / "e")), num_frames=5, size=32, batch_size=2,
                        num_workers=2, augment=True)  # fmt: skip
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert [b["frames"].shape for b in batches] == [(2, 5, 1, 32, 32), (1, 5, 1, 32, 32)]
    assert batches[0]["labelled"].sum(1).tolist() == [2, 2]
    assert torch.isnan(batches[0]["spacing"]).all()


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDKVM_DATA", str(_camus(tmp_path)))
    dm = EchoDataModule("camus", num_frames=3, size=16, batch_size=1, num_workers=0, augment=False)
    assert dm.root == tmp_path
    dm.setup("validate")
    assert next(iter(dm.val_dataloader()))["frames"].shape == (1, 3, 1, 16, 16)
    assert resolve_root("camus", str(tmp_path / "x"), 0) == tmp_path / "x"  # the argument wins
    monkeypatch.delenv("GDKVM_DATA")
    with pytest.raises(InputError, match="GDKVM_DATA"):
        resolve_root("echonet", None, 0)
    monkeypatch.chdir(tmp_path)
    assert resolve_root("echonet", None, 5) == tmp_path / "data" / "synthetic_echonet"


def test_synthetic_generation_only_into_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, int, int]] = []

    def fake_synth_camus(
        out: Path, patients: int, seed: int, release: str = "2023", overwrite: bool = False, workers: int = 1
    ) -> None:
        calls.append((Path(out), patients, seed))
        _camus(Path(out))

    fake = types.ModuleType("gdkvm.data.synthetic")
    fake.synth_camus, fake.synth_echonet = fake_synth_camus, None
    monkeypatch.setitem(sys.modules, "gdkvm.data.synthetic", fake)
    monkeypatch.chdir(tmp_path)
    dm = EchoDataModule("camus", synthetic=5, seed=3, num_frames=3, size=16, batch_size=2, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert len(calls) == 1 and calls[0][1:] == (5, 3)
    assert (tmp_path / "data" / "synthetic_camus" / "CAMUS_public").is_dir()
    assert not list((tmp_path / "data").glob(".*tmp*"))  # the temporary folder was renamed
    assert len(dm.datasets["train"]) == 6
    assert not ensure_synthetic("camus", tmp_path / "data" / "synthetic_camus", 5, 3)  # non-empty: untouched
    assert len(calls) == 1


def test_full_mode_needs_batch_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 in full mode"):
        EchoDataModule("camus", root=str(tmp_path), mode="full", batch_size=2)
    dm = EchoDataModule("camus", root=str(_camus(tmp_path)), size=16, eval_mode="full", batch_size=1, num_workers=0)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["frames"].shape == (1, 9, 1, 16, 16)  # patient0005: all 9 frames
    samples = [dm.datasets["test"][0], dm.make_dataset("train", "full", augment=False)[0]]
    with pytest.raises(ValueError, match="use batch_size=1 with mode='full'"):
        collate_clips(samples)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset must be one of"):
        EchoDataModule("kaggle", root=str(tmp_path))
    with pytest.raises(ValueError, match="CAMUS only"):
        EchoDataModule("echonet", root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="only has LV"):
        EchoDataModule("echonet", root=str(tmp_path), labels=("lv", "la"))
    dm = EchoDataModule("camus", root=str(tmp_path / "nothing"), num_workers=0)
    with pytest.raises(InputError, match="does not exist"):
        dm.setup("fit")


def test_synthetic_default_with_the_real_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GDKVM_DATA", raising=False)
    dm = EchoDataModule("camus", synthetic=4, num_frames=5, size=64, batch_size=2, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert (tmp_path / "data" / "synthetic_camus" / "database_nifti" / "patient0004").is_dir()
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 5, 1, 64, 64) and batch["masks"].shape == (2, 5, 64, 64)
    assert bool(batch["labelled"].all()) and (batch["masks"] == 1).any()


def test_synthetic_race_keeps_the_first_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data" / "synthetic_camus"

    def racing_synth(out: Path, patients: int, seed: int, **_: object) -> None:
        _camus(Path(out))
        root.mkdir(parents=True)  # another rank finished first
        (root / "marker.txt").write_text("first")

    fake = types.ModuleType("gdkvm.data.synthetic")
    fake.synth_camus, fake.synth_echonet = racing_synth, None
    monkeypatch.setitem(sys.modules, "gdkvm.data.synthetic", fake)
    ensure_synthetic("camus", root, 5, 0)
    assert (root / "marker.txt").read_text() == "first" and not (root / "CAMUS_public").exists()
    assert [p.name for p in root.parent.iterdir()] == ["synthetic_camus"]  # no temporary folder left behind
