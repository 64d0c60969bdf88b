"""End-to-end tests of `gdkvm fit | test | predict` (LightningCLI) on synthetic CAMUS data, and of the configs."""

from __future__ import annotations

import csv
import importlib.util
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gdkvm.checkpoint import load_model
from gdkvm.cli import main
from gdkvm.cli.train import format_table, resolve_ckpt_alias, run_cli
from gdkvm.data.datamodule import EchoDataModule
from gdkvm.data.mixed import MixedEchoDataModule
from gdkvm.lit import GDKVMSystem
from gdkvm.model import GDKVM, MODEL_PRESETS

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
QUICK = str(CONFIGS / "experiment" / "synthetic_camus.yaml")
CPU = str(CONFIGS / "trainer" / "cpu.yaml")


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


@pytest.fixture(scope="module")
def mixed_roots(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny synthetic sets of both formats: 4 CAMUS patients (4 train, 2 val, 2 test clips), 8 EchoNet videos."""
    from gdkvm.data.synthetic import synth_camus, synth_echonet

    base = tmp_path_factory.mktemp("mixed")
    camus = synth_camus(base / "camus", patients=4, seed=0, height=(64, 80), frames=(4, 8))
    return camus, synth_echonet(base / "echonet", videos=8, seed=0, frames=(32, 48))


def _mixed_args(experiment: str, roots: tuple[Path, Path], run_dir: Path, *extra: str) -> list[str]:
    """A mixed-data experiment on the CPU, shrunk: the small model, 32 px, 3 frames, batch 4, no workers."""
    return [
        "--config", str(CONFIGS / "experiment" / f"{experiment}.yaml"), "--trainer", CPU,
        "--model.net", str(CONFIGS / "model" / "small.yaml"),
        "--data.camus_root", str(roots[0]), "--data.echonet_root", str(roots[1]), "--data.camus_synthetic", "0",
        "--data.echonet_synthetic", "0", "--data.size", "32", "--data.num_frames", "3", "--data.batch_size", "4",
        "--data.num_workers", "0", "--data.cache_dir", "null",
        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def test_fit_fast_dev_run_mixed(mixed_roots, tmp_path):
    assert main(["fit", *_mixed_args("synthetic_mixed", mixed_roots, tmp_path, "--trainer.fast_dev_run", "true")]) == 0


def _load_make_default():
    spec = importlib.util.spec_from_file_location("make_default", REPO / "bench" / "make_default.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_model_recipe_on_mixed_data(mixed_roots, tmp_path, capsys):
    """The default-model experiment shrunk to 2 CPU steps: fit, test (overall + per source), bench/make_default.py."""
    run = tmp_path / "run"
    common = _mixed_args("default_model", mixed_roots, run, "--trainer.max_steps", "2",
                         "--trainer.val_check_interval", "2")  # fmt: skip
    assert main(["fit", *common]) == 0
    capsys.readouterr()
    assert main(["test", *common, "--ckpt_path", "best"]) == 0
    out = capsys.readouterr().out
    assert "Dice camus" in out and "Dice echonet" in out
    report = json.loads(next(run.rglob("metrics.json")).read_text())["summary"]
    for key in ("dice", "dice_ED", "dice_ES", "n_images"):
        assert key in report and f"camus/{key}" in report and f"echonet/{key}" in report
    # 2 CAMUS test clips x 3 labelled frames + 1 EchoNet clip x (ED, ES)
    assert (report["camus/n_images"], report["echonet/n_images"], report["n_images"]) == (6, 2, 8)
    assert "camus/hd95_mm" in report and "echonet/hd95_px" in report and "echonet/hd95_mm" not in report
    rows = list(csv.DictReader(next(run.rglob("per_case.csv")).open()))
    assert sorted({r["dataset"] for r in rows}) == ["camus", "echonet"]

    make_default = _load_make_default()
    make_default.main([str(run), "--out", str(tmp_path / "default.pt"), "--metadata", str(tmp_path / "metadata.json")])
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["heldout_metrics"]["n_images"] == 8 and "camus/dice" not in meta["heldout_metrics"]
    by_source = meta["heldout_metrics_by_source"]
    assert set(by_source) == {"camus", "echonet"} and by_source["echonet"]["n_images"] == 2
    assert f"CAMUS at {mixed_roots[0]} + EchoNet at {mixed_roots[1]}" in meta["training_data"]
    synthetic = {"camus_synthetic": 300, "echonet_synthetic": 600, "views": ["2CH", "4CH"], "seed": 1, "size": 112}
    assert make_default.describe_data(synthetic) == (
        "300 synthetic CAMUS-format patients x 2 views + 600 synthetic EchoNet-format videos (seed 1, 112 px, "
        "augmentation on)"
    )
    assert meta["heldout_cases"] == 3 and meta["training_config"] == "configs/experiment/default_model.yaml"
    net = load_model(tmp_path / "default.pt")
    with torch.no_grad():
        assert net(torch.rand(1, 3, 1, 32, 32)).shape == (1, 3, 2, 32, 32)


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
    mixed = _yaml(CONFIGS / "data" / "synthetic_mixed.yaml")
    assert mixed["class_path"] == "gdkvm.data.mixed.MixedEchoDataModule"
    assert set(mixed["init_args"]) == set(inspect.signature(MixedEchoDataModule.__init__).parameters) - {"self"}
    assert mixed["init_args"]["camus_root"] != mixed["init_args"]["echonet_root"]
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
    ["camus", "echonet", "synthetic_camus", "synthetic_echonet", "synthetic_camus_gpu", "synthetic_mixed",
     "default_model"],
)  # fmt: skip
def test_experiments_instantiate(experiment, tmp_path):
    args = ["--config", str(CONFIGS / "experiment" / f"{experiment}.yaml"),
            "--trainer", CPU, "--trainer.default_root_dir", str(tmp_path),
            "--model.net", str(CONFIGS / "model" / "small.yaml")]  # fmt: skip
    cli = run_cli(None, args)
    mixed = experiment in ("synthetic_mixed", "default_model")
    assert isinstance(cli.model.net, GDKVM)
    assert isinstance(cli.datamodule, MixedEchoDataModule if mixed else EchoDataModule)
    assert cli.trainer.gradient_clip_val == 3.0 and cli.model.net.num_parameters() < 1_000_000


def test_default_model_experiment():
    """The bundled model's recipe: both synthetic formats, 112 px, LV, augmentation, bf16 on 1 GPU for 7 minutes;
    bench/gpu_default.sh generates exactly the data the config names."""
    path = CONFIGS / "experiment" / "default_model.yaml"
    header = path.read_text().split("seed_everything")[0]
    assert "bench/gpu_default.sh" in header and "gdkvm fit --config configs/experiment/default_model.yaml" in header
    assert "SYNTHETIC" in header and "make_default.py" in header
    cfg = _yaml(path)
    data, trainer = cfg["data"]["init_args"], cfg["trainer"]
    assert cfg["data"]["class_path"] == "gdkvm.data.mixed.MixedEchoDataModule"
    assert cfg["model"]["net"] == "../model/default.yaml"
    assert (data["camus_synthetic"], data["echonet_synthetic"], data["size"], data["augment"]) == (300, 600, 112, True)
    assert data["num_workers"] == 12 and data["camus_root"] != data["echonet_root"]
    assert (trainer["precision"], trainer["devices"], trainer["max_time"]) == ("bf16-mixed", 1, "00:00:07:00")
    assert trainer["max_steps"] % trainer["val_check_interval"] == 0  # the last step is validated
    script = (REPO / "bench" / "gpu_default.sh").read_text()
    camus = re.search(r"synth camus --out (\S+)\s+\\?\s*--patients (\d+) --seed (\d+)", script)
    echonet = re.search(r"synth echonet --out (\S+)\s+\\?\s*--videos (\d+) --seed (\d+)", script)
    assert camus and camus.groups() == (data["camus_root"], str(data["camus_synthetic"]), str(data["seed"]))
    assert echonet and echonet.groups() == (data["echonet_root"], str(data["echonet_synthetic"]), str(data["seed"]))
    assert "--workers" in script and "make_default.py" in script and "default_model.yaml" in script
