"""Tests of gdkvm.lit: schedules, output handling, hyper-parameters, and short Lightning runs of the small GDKVM."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from lightning.pytorch import Trainer

from gdkvm.errors import GdkvmError
from gdkvm.lit import GDKVMSystem, lr_factor, meta_values, split_output
from gdkvm.model import build_model
from tests.helpers_train import DiscDataModule

# (step, total, schedule, warmup, milestones, gamma, min_ratio, expected factor)
LR_CASES = [
    (0, 100, "cosine", 10, (), 0.1, 0.0, 0.1),  # warm-up: (0 + 1) / 10
    (9, 100, "cosine", 10, (), 0.1, 0.0, 1.0),
    (10, 100, "cosine", 10, (), 0.1, 0.0, 1.0),  # cosine starts at 1
    (55, 100, "cosine", 10, (), 0.1, 0.0, 0.5),  # half way through the 90 cosine steps
    (100, 100, "cosine", 10, (), 0.1, 0.2, 0.2),  # ends at min_lr_ratio
    (999, 3000, "multistep", 0, (1000, 2000), 0.1, 0.0, 1.0),
    (1000, 3000, "multistep", 0, (1000, 2000), 0.1, 0.0, 0.1),
    (2500, 3000, "multistep", 0, (1000, 2000), 0.1, 0.0, 0.01),
    (5, 10, "constant", 0, (), 0.1, 0.0, 1.0),
]


@pytest.mark.parametrize("step, total, schedule, warmup, milestones, gamma, min_ratio, expected", LR_CASES)
def test_lr_factor(step, total, schedule, warmup, milestones, gamma, min_ratio, expected):
    assert lr_factor(step, total, schedule, warmup, milestones, gamma, min_ratio) == pytest.approx(expected)


def test_split_output_forms():
    x, a = torch.zeros(1), torch.ones(1)
    assert split_output(x) == (x, [])
    main, aux = split_output((x, {"sensory": a, "block0": a}))
    assert main is x and len(aux) == 2
    assert split_output({"logits": x, "aux": [a]})[1] == [a]
    assert split_output((x, a))[1] == [a]
    with pytest.raises(TypeError):
        split_output("nope")


def test_meta_values_forms():
    assert meta_values({"id": ["a", "b"]}, "id", 2, None) == ["a", "b"]
    assert meta_values({"ed_index": torch.tensor([0, 3])}, "ed_index", 2, -1) == [0, 3]
    assert meta_values([{"id": "a"}, {}], "id", 2, None) == ["a", None]
    assert meta_values({}, "view", 2, "") == ["", ""]


def test_hparams_hold_a_spec_not_the_module():
    system = GDKVMSystem(build_model("small"), lr=3e-4)
    spec = system.hparams["net"]
    assert spec["class_path"] == "gdkvm.model.gdkvm.GDKVM"
    assert spec["init_args"]["key_depths"] == [1, 1, 1] and spec["init_args"]["pix_dim"] == 64
    assert not any(isinstance(v, torch.nn.Module) for v in system.hparams_initial.values())
    with pytest.raises(GdkvmError, match="needs a network"):
        GDKVMSystem(None)


def _trainer(tmp_path, **kwargs) -> Trainer:
    defaults = {
        "accelerator": "cpu",
        "default_root_dir": tmp_path,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    }
    return Trainer(**{**defaults, **kwargs})


def test_fit_logs_and_test_writes_report(tmp_path):
    system = GDKVMSystem(build_model("small"), lr=1e-3, warmup_steps=1)
    data = DiscDataModule(train=4, val=3, size=32, frames=3, batch_size=2)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(system, data)
    logged = trainer.callback_metrics
    keys = ("train/loss", "train/ce", "train/dice_loss", "train/aux", "train/lr", "train/clips_per_s", "val/dice")
    for key in (*keys, "val/loss", "val/dice_EDES", "val/dice_pooled"):
        assert key in logged, key
    assert logged["train/aux"] > 0  # GDKVM's auxiliary logits are used
    assert "val/hd95_mm" in logged and "val/n_empty_pred_ED" in logged
    assert system.class_names == ["lv"]  # taken from the DataModule's labels

    trainer.test(system, data, verbose=False)
    report = json.loads((tmp_path / "lightning_logs" / "version_0" / "metrics.json").read_text())
    assert report["summary"]["n_images"] == 6 and report["summary"]["n_images_ED"] == 3
    assert report["info"]["n_cases"] == 3 and report["info"]["class_names"] == ["lv"]
    with (tmp_path / "lightning_logs" / "version_0" / "per_case.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {r["phase"] for r in rows} == {"ED", "ES"}
    assert {r["distance_unit"] for r in rows} == {"mm"} and rows[0]["case_id"] == "disc1_0"
    dice = [float(r["dice"]) for r in rows]
    assert report["summary"]["dice"] == pytest.approx(sum(dice) / len(dice), rel=1e-6)


def test_predict_returns_probabilities(tmp_path):
    system = GDKVMSystem(build_model("small"))
    data = DiscDataModule(val=2, size=32, frames=3, batch_size=2)
    out = _trainer(tmp_path).predict(system, data)
    probs = out[0]["probs"]
    assert probs.shape == (2, 3, 2, 32, 32)
    torch.testing.assert_close(probs.sum(dim=2), torch.ones(2, 3, 32, 32))
    assert out[0]["meta"]["id"] == ["disc1_0", "disc1_1"]


def test_schedule_and_optimizer_are_wired(tmp_path):
    system = GDKVMSystem(build_model("small"), lr=1e-3, scheduler="multistep", milestones=(2,), gamma=0.5)
    data = DiscDataModule(train=8, val=2, size=32, frames=2, batch_size=2)
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(system, data)
    opt = trainer.optimizers[0]
    assert type(opt).__name__ == "AdamW" and opt.param_groups[0]["weight_decay"] == 1e-3
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)  # 3 steps done, milestone 2 passed
    assert math.isclose(trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0], 5e-4)


def test_class_count_mismatch_is_a_clear_error(tmp_path):
    data = DiscDataModule(train=2, val=2, size=32, frames=2, batch_size=2)
    data.num_classes, data.labels = 3, ("lv", "myo", "la")
    with pytest.raises(GdkvmError, match="predicts 1 class"):
        _trainer(tmp_path, max_steps=1).fit(GDKVMSystem(build_model("small")), data)
