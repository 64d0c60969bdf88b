"""End-to-end tests of `gdkvm fit | test | predict` (LightningCLI) on synthetic CAMUS data, and of the configs."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gdkvm.checkpoint import load_model
from gdkvm.cli import main
from gdkvm.cli.train import format_table, resolve_ckpt_alias, run_cli
from gdkvm.data.datamodule import EchoDataModule
from gdkvm.lit import GDKVMSystem
from gdkvm.model import GDKVM, MODEL_PRESETS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK = str(CONFIGS / "experiment" / "synthetic_camus.yaml")


@pytest.fixture(scope="module")
def camus_root(tmp_path_factory) -> Path:
    """A 4-patient synthetic CAMUS 2023 folder (4 train, 2 val, 2 test cases: both views), generated once."""
    from gdkvm.data.synthetic import synth_camus

    return synth_camus(tmp_path_factory.mktemp("data") / "camus", patients=4, seed=0)


def _args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The quick synthetic experiment shrunk for a CPU test: 32 px, 3 frames, batch 2, no workers."""
    return [
        "--config", QUICK,
        "--data.root", str(root), "--data.synthetic", "0", "--data.size", "32", "--data.num_frames", "3",
        "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def test_fit_fast_dev_run(camus_root, tmp_path):
    assert main(["fit", *_args(camus_root, tmp_path, "--trainer.fast_dev_run", "true")]) == 0


def _last_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_fit_resume_test_predict_and_load(camus_root, tmp_path, capsys):
    # 4 training cases at batch 2 -> 2 steps per epoch; stop at step 3, i.e. in the middle of epoch 2
    every_step = {"save_last": True, "save_top_k": 0, "every_n_train_steps": 1}
    callbacks = json.dumps([{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": every_step}])
    common = _args(camus_root, tmp_path, "--trainer.check_val_every_n_epoch", "1", "--trainer.callbacks", callbacks)
    assert main(["fit", *common, "--trainer.max_steps", "3"]) == 0
    last = resolve_ckpt_alias(tmp_path, "last")
    assert last is not None and _last_step(last) == 3
    assert main(["fit", *common, "--trainer.max_steps", "5", "--ckpt_path", "last"]) == 0
    resumed = resolve_ckpt_alias(tmp_path, "last")
    assert resumed != last and _last_step(resumed) == 5  # continued from 3, did not restart at 0
    steps = [int(r["step"]) for r in csv.DictReader((resumed.parents[1] / "metrics.csv").open()) if r["train/loss"]]
    assert steps and min(steps) >= 3

    capsys.readouterr()
    assert main(["test", *_args(camus_root, tmp_path, "--ckpt_path", "last")]) == 0
    out = capsys.readouterr().out
    assert "Dice (pooled)" in out and "metrics.json" in out
    report_dir = Path(out.strip().splitlines()[-1].split(" and ")[-1]).parent
    report = json.loads((report_dir / "metrics.json").read_text())
    assert {"dice", "dice_ED", "dice_ES", "dice_pooled", "hd95_mm", "n_empty_pred"} <= set(report["summary"])
    assert report["info"]["checkpoint"] == str(resumed)
    rows = list(csv.DictReader((report_dir / "per_case.csv").open()))
    # CAMUS 2023 half sequences are labelled on every frame: 3 rows per clip, frame 0 ED, frame 2 ES, frame 1 other
    assert [r["phase"] for r in rows[:3]] == ["ED", "other", "ES"] and {r["distance_unit"] for r in rows} == {"mm"}
    assert len(rows) == 3 * report["info"]["n_cases"] and report["summary"]["n_images_ED"] == report["info"]["n_cases"]

    net = load_model(resumed)
    system = GDKVMSystem.load_from_checkpoint(resumed, map_location="cpu")
    frames = torch.rand(1, 3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(frames), system.net.eval()(frames), rtol=0, atol=0)

    assert main(["predict", *_args(camus_root, tmp_path, "--ckpt_path", str(resumed))]) == 0
    files = sorted(tmp_path.rglob("predictions/*.npz"))
    assert len(files) == report["info"]["n_cases"]
    with np.load(files[0]) as npz:
        assert npz["masks"].shape == (3, 32, 32) and npz["probs"].shape == (3, 2, 32, 32)


@pytest.mark.slow
def test_short_training_raises_validation_dice(tmp_path):
    """The small model on 12 synthetic patients (18 training clips) at 48 px: ~80 steps take val Dice above 0.8."""
    from gdkvm.data.synthetic import synth_camus

    root = synth_camus(tmp_path / "camus12", patients=12, seed=0)
    args = _args(root, tmp_path / "runs", "--data.size", "48", "--data.num_frames", "4", "--data.batch_size", "6",
                 "--trainer.max_steps", "-1", "--trainer.max_epochs", "27", "--trainer.check_val_every_n_epoch", "27",
                 "--model.lr", "3e-3")  # fmt: skip
    start = float(run_cli("validate", args).trainer.callback_metrics["val/dice"])
    cli = run_cli("fit", args)
    end = float(cli.trainer.callback_metrics["val/dice"])
    assert cli.trainer.global_step == 81
    assert end > 0.8 and end > start + 0.5, (start, end)


def test_errors_are_one_line(camus_root, tmp_path, capsys):
    assert main(["test", *_args(camus_root, tmp_path, "--ckpt_path", "best")]) == 2
    err = capsys.readouterr().err
    assert "gdkvm test: error:" in err and "no best*.ckpt" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(tmp_path / "missing.yaml")])
    assert exc.value.code == 2


def test_format_table():
    table = format_table({"dice": 0.9, "dice_ED": 0.91, "n_images": 4, "hd95_mm": float("nan")})
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "all", "ED", "ES"]
    assert lines[1].split() == ["Dice", "(mean)", "0.9000", "0.9100", "-"]
    assert "HD95 mm" in table and "Dice (pooled)" not in table and "Dice lv" not in table
    several = format_table({"dice": 0.8, "lv/dice": 0.9, "lv/dice_ES": 0.85, "la/dice": 0.7})
    assert several.splitlines()[-2].split() == ["Dice", "la", "0.7000", "-", "-"]
    assert several.splitlines()[-1].split() == ["Dice", "lv", "0.9000", "-", "0.8500"]


# ----------------------------------------------------------------------------------------------- configs
def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_model_configs_match_the_network():
    defaults = {k: p.default for k, p in inspect.signature(GDKVM.__init__).parameters.items() if k != "self"}
    norm = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    full = _yaml(CONFIGS / "model" / "gdkvm.yaml")
    assert full["class_path"] == "gdkvm.model.GDKVM" and full["init_args"] == norm
    small = _yaml(CONFIGS / "model" / "small.yaml")["init_args"]
    for key, value in MODEL_PRESETS["small"].items():
        assert small[key] == (list(value) if isinstance(value, tuple) else value), key
    token = _yaml(CONFIGS / "model" / "gdkvm_token.yaml")["init_args"]
    assert token == {**norm, "update_rule": "token", "value_feedback": False}


def test_data_configs_fit_the_datamodule():
    params = set(inspect.signature(EchoDataModule.__init__).parameters) - {"self"}
    expected = {"camus": ("camus", 256), "echonet": ("echonet", 128)}
    for name in ("camus", "echonet", "synthetic_camus", "synthetic_echonet"):
        cfg = _yaml(CONFIGS / "data" / f"{name}.yaml")
        assert cfg["class_path"] == "gdkvm.data.datamodule.EchoDataModule"
        assert set(cfg["init_args"]) <= params, name
        if name in expected:  # the paper's settings
            assert (cfg["init_args"]["dataset"], cfg["init_args"]["size"]) == expected[name]
            assert cfg["init_args"]["num_frames"] == 10 and cfg["init_args"]["batch_size"] == 10


@pytest.mark.parametrize("name", ["camus", "echonet"])
def test_paper_experiments(name):
    cfg = _yaml(CONFIGS / "experiment" / f"{name}.yaml")
    model, trainer = cfg["model"], cfg["trainer"]
    assert (model["lr"], model["weight_decay"], model["scheduler"]) == (1e-4, 1e-3, "multistep")
    assert cfg["data"] == f"../data/{name}.yaml" and model["net"] == "../model/gdkvm.yaml"
    assert trainer["gradient_clip_val"] == 3.0 and trainer["precision"] == "bf16-mixed"
    assert 1500 <= trainer["max_steps"] <= 3000


@pytest.mark.parametrize(
    "experiment",
    ["camus", "echonet", "synthetic_camus", "synthetic_echonet", "synthetic_camus_gpu", "default_model"],
)
def test_experiments_instantiate(experiment, tmp_path):
    args = ["--config", str(CONFIGS / "experiment" / f"{experiment}.yaml"),
            "--trainer", str(CONFIGS / "trainer" / "cpu.yaml"), "--trainer.default_root_dir", str(tmp_path),
            "--model.net", str(CONFIGS / "model" / "small.yaml")]  # fmt: skip
    cli = run_cli(None, args)
    assert isinstance(cli.model.net, GDKVM) and isinstance(cli.datamodule, EchoDataModule)
    assert cli.trainer.gradient_clip_val == 3.0 and cli.model.net.num_parameters() < 1_000_000
