"""`gdkvm fit | validate | test | predict`: LightningCLI over `GDKVMSystem` and any LightningDataModule.

One YAML is enough: ``gdkvm fit --config configs/experiment/synthetic_camus.yaml``. Config groups can be layered
(``--trainer configs/trainer/cpu.yaml``, ``--model.net configs/model/small.yaml``, ``--data configs/data/camus.yaml``)
and single values overridden (``--trainer.max_steps 100``, ``--data.root /data/camus``).
``--ckpt_path last`` (or ``best``) means the newest such checkpoint under the trainer's ``default_root_dir``, so
``gdkvm fit ... --ckpt_path last`` resumes a killed run. For ``validate``/``test``/``predict``, ``--ckpt_path X.ckpt``
rebuilds the network from the checkpoint's saved hyper-parameters, so only the data config is needed.

``gdkvm test`` writes ``metrics.json`` and ``per_case.csv`` to the run's log folder (see `gdkvm.lit`) and prints a
summary table; ``gdkvm predict`` writes one ``<case id>.npz`` (``masks`` [T, H, W] uint8 label ids, ``probs``
[T, C+1, H, W] float16) per clip to ``<log folder>/predictions/``.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningCLI

from gdkvm.errors import InputError
from gdkvm.lit import GDKVMSystem, meta_values

logger = logging.getLogger(__name__)
# Lightning adds its own stderr handler to the "lightning" logger; the CLI's root handler already prints everything,
# so stop the double lines ("INFO: x" and "INFO lightning...: x").
logging.getLogger("lightning").propagate = False

#: Rows of the printed test table: (label, summary key prefix).
_TABLE_ROWS = (
    ("Dice (mean)", "dice"),
    ("Dice (pooled)", "dice_pooled"),
    ("IoU (mean)", "iou"),
    ("HD95 mm", "hd95_mm"),
    ("ASSD mm", "assd_mm"),
    ("HD95 px", "hd95_px"),
    ("ASSD px", "assd_px"),
    ("images", "n_images"),
    ("empty pred", "n_empty_pred"),
    ("empty GT", "n_empty_gt"),
    ("undefined HD", "n_distance_undefined"),
)


class MaskWriter(BasePredictionWriter):
    """Writes ``<out_dir>/<case id>.npz`` per clip (``masks`` uint8 [T, H, W], ``probs`` float16 [T, C+1, H, W]).

    Args:
        out_dir: folder for the files (created); existing files are never overwritten (a suffix is added).
    """

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        probs = prediction["probs"].float().cpu()
        ids = meta_values(prediction.get("meta", {}), "id", probs.shape[0], None)
        for i in range(probs.shape[0]):
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(ids[i] if ids[i] is not None else f"batch{batch_idx}_{i}"))
            path = self.out_dir / f"{name}.npz"
            k = 1
            while path.exists():
                path, k = self.out_dir / f"{name}-{k}.npz", k + 1
            masks = probs[i].argmax(dim=1).numpy().astype(np.uint8)
            np.savez_compressed(path, masks=masks, probs=probs[i].numpy().astype(np.float16))


def resolve_ckpt_alias(root: str | Path, alias: str) -> Path | None:
    """Newest ``last*.ckpt`` (alias ``last``) or ``best*.ckpt`` (alias ``best``) anywhere under ``root``, or None.

    Lightning looks for ``last`` only in the current run's checkpoint folder, which is new for every run; this finds
    the previous runs' checkpoints of the same experiment (same ``default_root_dir``).
    """
    found = [p for p in Path(root).rglob(f"{alias}*.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


class GdkvmCLI(LightningCLI):
    """LightningCLI with gdkvm's defaults: data given as ``class_path``, the optimizer inside `GDKVMSystem`.

    ``--ckpt_path last`` / ``--ckpt_path best`` mean the newest such checkpoint under the trainer's
    ``default_root_dir`` (any earlier run of the experiment).
    """

    def _resolve_ckpt(self) -> None:
        config = self.config_init[self.subcommand]
        alias = config.get("ckpt_path")
        if alias not in ("last", "best"):
            return
        root = Path(self.trainer.default_root_dir)
        path = resolve_ckpt_alias(root, alias)
        if path is None and self.subcommand == "fit" and alias == "last":
            logger.warning("no last*.ckpt under %s: training starts from scratch", root)
        elif path is None:
            raise InputError(f"no {alias}*.ckpt checkpoint found under this folder (trainer.default_root_dir)", root)
        else:
            logger.info("--ckpt_path %s -> %s", alias, path)
        config["ckpt_path"] = None if path is None else str(path)

    def before_fit(self) -> None:
        self._resolve_ckpt()

    def before_validate(self) -> None:
        self._resolve_ckpt()

    def before_test(self) -> None:
        self._resolve_ckpt()
        self.config_init["test"]["verbose"] = False  # our table is printed after the run; every key is in metrics.json

    def before_predict(self) -> None:
        self._resolve_ckpt()
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions"
        if not any(isinstance(cb, BasePredictionWriter) for cb in self.trainer.callbacks):
            self.trainer.callbacks.append(MaskWriter(out))

    def after_test(self) -> None:
        summary = getattr(self.model, "test_summary", {})
        where = getattr(self.model, "test_report_dir", None)
        if self.trainer.is_global_zero and summary:
            print(format_table(summary))
            if where is not None:
                print(f"wrote {where / 'metrics.json'} and {where / 'per_case.csv'}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1):
        return str(int(value))
    return f"{value:.4f}"


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of the main test metrics: rows metric (plus the Dice of each class when there are several),
    columns all / ED / ES (absent cells ``-``)."""
    lines = [f"{'metric':<16}{'all':>10}{'ED':>10}{'ES':>10}"]
    classes = sorted({k.split("/", 1)[0] for k in summary if k.endswith("/dice")})
    rows = list(_TABLE_ROWS) + [(f"Dice {name}", f"{name}/dice") for name in classes]
    for label, key in rows:
        cells = [summary.get(key), summary.get(f"{key}_ED"), summary.get(f"{key}_ES")]
        if all(c is None for c in cells):
            continue
        lines.append(f"{label:<16}" + "".join(f"{_fmt(c):>10}" for c in cells))
    return "\n".join(lines)


def run_cli(subcommand: str | None, argv: list[str]) -> GdkvmCLI:
    """Run one LightningCLI sub-command with ``argv`` (e.g. ``["--config", "x.yaml"]``) and return the CLI.

    With ``subcommand=None`` the configuration is only parsed and instantiated (``cli.model``, ``cli.datamodule``,
    ``cli.trainer``), nothing runs.
    """
    # we pass argv on purpose (the dispatcher strips "gdkvm <command>"); Lightning warns when sys.argv is non-empty
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return GdkvmCLI(
        GDKVMSystem,
        LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "gdkvm"},
        args=list(argv) if subcommand is None else [subcommand, *argv],
        run=subcommand is not None,
    )


def main_fit(argv: list[str]) -> int:
    """``gdkvm fit``: train (``--ckpt_path last`` resumes)."""
    run_cli("fit", argv)
    return 0


def main_validate(argv: list[str]) -> int:
    """``gdkvm validate``: validation metrics of a checkpoint."""
    run_cli("validate", argv)
    return 0


def main_test(argv: list[str]) -> int:
    """``gdkvm test``: test metrics of a checkpoint; writes metrics.json and per_case.csv, prints a table."""
    run_cli("test", argv)
    return 0


def main_predict(argv: list[str]) -> int:
    """``gdkvm predict``: per-clip masks and probabilities as .npz files."""
    run_cli("predict", argv)
    return 0
