"""MixedEchoDataModule: CAMUS-format and EchoNet-format clips in one batch, sampling ratio, synthetic generation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gdkvm.data.mixed import COMMON_META, MixedEchoDataModule, collate_mixed, mixing_weights, source_root
from gdkvm.errors import InputError
from gdkvm.lit import GDKVMSystem
from gdkvm.model import build_model


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny synthetic sets: 4 CAMUS patients (4 train, 2 val, 2 test clips) and 8 EchoNet videos (6 / 1 / 1)."""
    from gdkvm.data.synthetic import synth_camus, synth_echonet

    base = tmp_path_factory.mktemp("mixed")
    camus = synth_camus(base / "camus", patients=4, seed=0, height=(64, 80), frames=(4, 8))
    echonet = synth_echonet(base / "echonet", videos=8, seed=0, frames=(32, 48))
    return camus, echonet


def _module(roots: tuple[Path, Path], **kwargs: object) -> MixedEchoDataModule:
    args = {"camus_root": str(roots[0]), "echonet_root": str(roots[1]), "num_frames": 4, "size": 32,
            "batch_size": 4, "num_workers": 0}  # fmt: skip
    return MixedEchoDataModule(**{**args, **kwargs})


def test_batches_mix_both_sources(roots: tuple[Path, Path]) -> None:
    dm = _module(roots, batch_size=10, augment=True)
    dm.setup("fit")
    assert dm.sizes("train") == {"camus": 4, "echonet": 6} and dm.sizes("val") == {"camus": 2, "echonet": 1}
    assert dm.labels == ("lv",) and dm.num_classes == 1
    batch = next(iter(dm.train_dataloader()))  # all 10 training clips: both sources in one batch
    assert batch["frames"].shape == (10, 4, 1, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["masks"].shape == (10, 4, 32, 32) and batch["masks"].dtype == torch.int64
    assert batch["labelled"].shape == (10, 4) and batch["spacing"].shape == (10, 2)
    assert set(batch["meta"]) == set(COMMON_META) and int(batch["masks"].max()) == 1
    source = batch["meta"]["dataset"]
    assert sorted(source) == ["camus"] * 4 + ["echonet"] * 6
    for i, name in enumerate(source):
        if name == "camus":  # CAMUS 2023 half sequences: every frame labelled, spacing in mm
            assert batch["labelled"][i].all() and torch.isfinite(batch["spacing"][i]).all()
        else:  # EchoNet: ED and ES traced only, no spacing
            assert int(batch["labelled"][i].sum()) >= 2 and torch.isnan(batch["spacing"][i]).all()
            ed, es = int(batch["meta"]["ed_index"][i]), int(batch["meta"]["es_index"][i])
            assert batch["labelled"][i, ed] and batch["labelled"][i, es]

    system = GDKVMSystem(build_model("small"))
    losses, logits = system._shared_step(batch, "train")
    assert logits.shape == (10, 4, 2, 32, 32) and math.isfinite(float(losses["loss"].detach()))
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in system.parameters() if p.grad is not None)


def test_eval_splits_keep_both_sources_in_order(roots: tuple[Path, Path]) -> None:
    dm = _module(roots)
    dm.setup("test")
    names = [n for b in dm.test_dataloader() for n in b["meta"]["dataset"]]
    assert names == ["camus", "camus", "echonet"]  # CAMUS first, not shuffled
    assert [n for b in dm.predict_dataloader() for n in b["meta"]["dataset"]] == names


def test_camus_fraction_sets_the_sampling_ratio(roots: tuple[Path, Path]) -> None:
    weights = mixing_weights([4, 6], [0.25, 0.75])
    assert weights.shape == (10,) and float(weights[:4].sum()) == pytest.approx(0.25)
    assert float(weights.sum()) == pytest.approx(1.0)
    dm = _module(roots, camus_fraction=1.0, augment=False)
    names = [n for b in dm.train_dataloader() for n in b["meta"]["dataset"]]
    assert len(names) == 10 and set(names) == {"camus"}  # epochs as long as the concatenation, all from CAMUS
    with pytest.raises(ValueError, match="camus_fraction"):
        _module(roots, camus_fraction=1.5)


def test_collate_refuses_clips_without_the_common_meta() -> None:
    sample = {"frames": torch.zeros(2, 1, 8, 8), "masks": torch.zeros(2, 8, 8, dtype=torch.int64),
              "labelled": torch.ones(2, dtype=torch.bool), "spacing": torch.ones(2), "meta": {"id": "x"}}  # fmt: skip
    with pytest.raises(KeyError, match="lacks"):
        collate_mixed([sample])


def test_generates_both_synthetic_sets_in_separate_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="camus_root"):
        source_root("camus", None, 0)
    dm = MixedEchoDataModule(echonet_root="e", camus_synthetic=1, echonet_synthetic=2, synth_workers=2)
    roots = dm.roots()
    assert roots == {"camus": tmp_path / "data" / "synthetic_camus", "echonet": Path("e")}
    dm.prepare_data()
    assert (roots["camus"] / "database_nifti" / "patient0001").is_dir()
    assert len(list((tmp_path / "e" / "Videos").glob("*.avi"))) == 2
    stamp = (tmp_path / "e" / "FileList.csv").stat().st_mtime_ns
    dm.prepare_data()  # non-empty folders are never written to
    assert (tmp_path / "e" / "FileList.csv").stat().st_mtime_ns == stamp
