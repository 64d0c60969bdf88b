"""`GDKVMSystem`: the LightningModule that trains, validates and tests a GDKVM network (no model code here).

The network comes in as ``net`` (LightningCLI writes it as ``net: {class_path: gdkvm.model.GDKVM, init_args: ...}``);
its spec is kept in the hyper-parameters, so a checkpoint alone rebuilds it (`gdkvm.checkpoint.load_model`).

Logged keys: ``train/loss``, ``train/ce``, ``train/dice_loss``, ``train/aux``, ``train/lr``, ``train/clips_per_s``
(and ``train/peak_mem_gib`` on CUDA) per step;
``val/loss`` and ``val/<metric>``, ``test/loss`` and ``test/<metric>`` per epoch, where ``<metric>`` is every key of
`gdkvm.metrics.segmentation.summarize` (``dice``, ``dice_ED``, ``dice_pooled_ES``, ``hd95_mm``, ``n_empty_pred``...);
when the clips come from more than one data set (``meta["dataset"]``, e.g. `gdkvm.data.mixed.MixedEchoDataModule`),
every key is also given per data set as ``<stage>/<dataset>/<metric>`` (``val/camus/dice``, ``test/echonet/dice``).
At the end of a test run, ``metrics.json`` and ``per_case.csv`` are written to the run's log folder.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import nn

from gdkvm.checkpoint import build_from_spec, model_spec
from gdkvm.errors import GdkvmError
from gdkvm.metrics.segmentation import Phase, SegmentationMetrics, summarize, write_report
from gdkvm.model.losses import SegmentationLoss

logger = logging.getLogger(__name__)


def lr_factor(
    step: int,
    total_steps: int,
    schedule: str,
    warmup_steps: int = 0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    min_lr_ratio: float = 0.0,
) -> float:
    """Learning-rate multiplier at optimizer step ``step``: linear warm-up, then cosine / multistep / constant."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "multistep":
        return gamma ** sum(step >= m for m in milestones)
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def split_output(out: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(main logits [B, T, C+1, H, W], auxiliary logits) of a network output.

    Accepted: a tensor; a dict with ``logits`` and optional ``aux`` (tensor, list or dict of tensors); a tuple
    ``(logits, aux...)`` where each aux item is a tensor, a list or a dict of tensors (GDKVM's ``return_aux=True``).
    """
    if isinstance(out, torch.Tensor):
        return out, []
    if isinstance(out, dict):
        aux = out.get("aux") or []
        if isinstance(aux, dict):
            return out["logits"], list(aux.values())
        return out["logits"], [aux] if isinstance(aux, torch.Tensor) else list(aux)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        rest: list[torch.Tensor] = []
        for item in out[1:]:
            if isinstance(item, torch.Tensor):
                rest.append(item)
            elif isinstance(item, dict):
                rest.extend(item.values())
            elif item:
                rest.extend(item)
        return out[0], rest
    raise TypeError(f"unsupported network output {type(out).__name__}")


def meta_values(meta: Any, key: str, n: int, default: Any) -> list:
    """Per-clip values of one meta field (meta collated as a dict of lists/tensors, or a list of dicts)."""
    if isinstance(meta, dict):
        values = meta.get(key)
    elif isinstance(meta, (list, tuple)):
        values = [m.get(key, default) if isinstance(m, dict) else default for m in meta]
    else:
        values = None
    if values is None:
        return [default] * n
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    return list(values) if isinstance(values, (list, tuple)) else [values] * n


class GDKVMSystem(LightningModule):
    """Training system: CE + soft Dice on labelled frames, AdamW, warm-up + cosine or MultiStep, MONAI metrics.

    Args:
        net: the network (required; optional in the signature only so that ``gdkvm test --ckpt_path X`` can take it
            from the checkpoint), ``forward(frames [B, T, 1, H, W]) -> logits [B, T, C+1, H, W]`` (or a dict with
            ``logits`` and ``aux``, or a tuple ``(logits, aux...)``).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        eps: AdamW epsilon.
        scheduler: ``cosine`` (to ``min_lr_ratio * lr`` at the last step), ``multistep`` (``gamma`` at each of
            ``milestones``, the paper code's schedule) or ``constant``; all per optimizer step after ``warmup_steps``.
        warmup_steps: linear warm-up steps.
        milestones: MultiStep milestones (optimizer steps).
        gamma: MultiStep factor.
        min_lr_ratio: final cosine learning rate as a fraction of ``lr``.
        ce_weight: cross-entropy weight.
        dice_weight: soft Dice weight.
        aux_weight: weight of each auxiliary output's loss.
        class_names: names of the C foreground classes (default: the DataModule's ``labels``, else ``class1``...).
        val_distances: compute HD95/ASSD during validation too (always during test).
        report_dir: where the test report goes (default: the trainer's log folder).
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        scheduler: Literal["cosine", "multistep", "constant"] = "cosine",
        warmup_steps: int = 0,
        milestones: Sequence[int] = (1000, 2000),
        gamma: float = 0.1,
        min_lr_ratio: float = 0.01,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        aux_weight: float = 0.01,
        class_names: Sequence[str] | None = None,
        val_distances: bool = True,
        report_dir: str | None = None,
    ) -> None:
        super().__init__()
        if net is None:
            raise GdkvmError("GDKVMSystem needs a network: give model.net in the config, or --ckpt_path a checkpoint")
        if isinstance(net, dict):  # a spec, as `load_from_checkpoint` passes it back for a system built in Python
            net = build_from_spec(net)
        with warnings.catch_warnings():  # Lightning warns about a module in the hparams; it is replaced below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()  # under LightningCLI, "net" is saved as its {class_path, init_args}
        if isinstance(self.hparams.get("net"), nn.Module):  # built in Python: save a spec, never the module
            spec = model_spec(net)
            if spec is None:
                logger.warning("cannot describe %s's arguments: its checkpoints need the config", type(net).__name__)
            self.save_hyperparameters({**self.hparams, "net": spec})
        self.net = net
        self._accepts_return_aux = "return_aux" in inspect.signature(net.forward).parameters
        self.loss = SegmentationLoss(ce_weight=ce_weight, dice_weight=dice_weight, aux_weight=aux_weight)
        self.class_names = list(class_names) if class_names else None
        self._metrics: dict[str, SegmentationMetrics] = {}
        self.test_summary: dict[str, float] = {}
        self.test_rows: list[dict] = []

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Main logits [B, T, C+1, H, W] of frames [B, T, 1, H, W] float in [0, 1]."""
        return split_output(self.net(frames))[0]

    def setup(self, stage: str) -> None:
        if self.trainer.strategy.root_device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        if self.class_names is None:  # e.g. ("lv",) or ("lv", "myo", "la") from EchoDataModule(labels=...)
            labels = getattr(self.trainer.datamodule, "labels", None) if self.trainer.datamodule is not None else None
            if isinstance(labels, (list, tuple)) and labels and all(isinstance(x, str) for x in labels):
                self.class_names = list(labels)
        data_classes = getattr(self.trainer.datamodule, "num_classes", None)
        net_classes = getattr(self.net, "num_classes", None)
        if isinstance(data_classes, int) and isinstance(net_classes, int) and data_classes != net_classes:
            raise GdkvmError(
                f"the network predicts {net_classes} class(es) but the data have {data_classes} "
                f"(labels {getattr(self.trainer.datamodule, 'labels', '?')}): set model.net.init_args.num_classes"
            )

    # ----------------------------------------------------------------------------------------------- steps
    def _shared_step(self, batch: dict, stage: str) -> tuple[dict, torch.Tensor]:
        want_aux = self._accepts_return_aux and self.hparams.aux_weight > 0 and stage == "train"
        out = self.net(batch["frames"], return_aux=True) if want_aux else self.net(batch["frames"])
        logits, aux = split_output(out)
        losses = self.loss(logits, batch["masks"], batch["labelled"], aux=aux)
        return losses, logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses, _ = self._shared_step(batch, "train")
        bs = batch["frames"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log_dict(
            {"train/ce": losses["ce"], "train/dice_loss": losses["dice"], "train/aux": losses["aux"]}, batch_size=bs
        )
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        self._log_speed(bs)
        return losses["loss"]

    def _log_speed(self, batch_size: int) -> None:
        """``train/clips_per_s`` (all ranks, between consecutive steps, data loading included) and, on CUDA,
        ``train/peak_mem_gib`` (this rank's peak allocated memory)."""
        now = time.perf_counter()
        last, self._last_step_time = getattr(self, "_last_step_time", None), now
        if last is not None and now > last:
            self.log("train/clips_per_s", batch_size * self.trainer.world_size / (now - last), batch_size=batch_size)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.log("train/peak_mem_gib", peak, batch_size=batch_size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Probabilities [B, T, C+1, H, W] (softmax) plus the batch's meta."""
        frames = batch["frames"] if isinstance(batch, dict) else batch
        probs = self(frames).float().softmax(dim=2)
        return {"probs": probs, "meta": batch.get("meta", {}) if isinstance(batch, dict) else {}}

    def _metric(self, stage: str, num_classes: int) -> SegmentationMetrics:
        if stage not in self._metrics:
            names = self.class_names if self.class_names and len(self.class_names) == num_classes else None
            if names is None:
                names = [f"class{i}" for i in range(1, num_classes + 1)]
                if self.class_names:
                    logger.warning(
                        "class_names %s do not fit %d classes; using %s", self.class_names, num_classes, names
                    )
            distances = stage == "test" or bool(self.hparams.val_distances)
            self._metrics[stage] = SegmentationMetrics(names, distances=distances)
        return self._metrics[stage]

    def _eval_step(self, batch: dict, stage: str) -> None:
        losses, logits = self._shared_step(batch, stage)
        bs = batch["frames"].shape[0]
        self.log(f"{stage}/loss", losses["loss"], batch_size=bs, sync_dist=True)
        labelled = batch["labelled"].bool()
        b_idx, t_idx = labelled.nonzero(as_tuple=True)
        if b_idx.numel() == 0:
            return
        meta = batch.get("meta", {})
        ids = meta_values(meta, "id", bs, None)
        ids = [str(i) if i is not None else f"rank{self.global_rank}-{id(batch)}-{k}" for k, i in enumerate(ids)]
        ed, es = meta_values(meta, "ed_index", bs, -1), meta_values(meta, "es_index", bs, -1)
        bl, tl = b_idx.tolist(), t_idx.tolist()
        phases = [Phase.ED if t == ed[b] else Phase.ES if t == es[b] else Phase.OTHER for b, t in zip(bl, tl)]
        spacing = batch.get("spacing")
        metric = self._metric(stage, logits.shape[2] - 1)
        metric(
            logits[b_idx, t_idx].argmax(dim=1),
            batch["masks"][b_idx, t_idx],
            None if spacing is None else spacing[b_idx],
            case_ids=[ids[b] for b in bl],
            frames=tl,
            phases=phases,
            datasets=[str(d) for d in (meta_values(meta, "dataset", bs, "")[b] for b in bl)],
            views=[str(v) for v in (meta_values(meta, "view", bs, "")[b] for b in bl)],
        )

    # ----------------------------------------------------------------------------------------------- epoch ends
    def _log_summary(self, stage: str) -> tuple[dict, list[dict]]:
        metric = self._metrics.get(stage)
        if metric is None:
            return {}, []
        rows = metric.rows()
        summary = summarize(rows, metric.class_names)
        sources = sorted({r["dataset"] for r in rows if r["dataset"]})
        if len(sources) > 1:  # mixed data (e.g. gdkvm.data.mixed): every key per source too, as "<source>/<key>"
            for source in sources:
                part = summarize([r for r in rows if r["dataset"] == source], metric.class_names)
                summary.update({f"{source}/{k}": v for k, v in part.items()})
        metric.reset()
        values = {f"{stage}/{k}": float(v) for k, v in summary.items()}
        main = f"{stage}/dice"
        if main in values:
            self.log(main, values.pop(main), prog_bar=True)
        if values:
            self.log_dict(values)
        return summary, rows

    def on_validation_epoch_end(self) -> None:
        self._log_summary("val")
        self._last_step_time = None  # the next step's interval would include this validation

    def on_test_epoch_end(self) -> None:
        self.test_summary, self.test_rows = self._log_summary("test")
        if not self.trainer.is_global_zero or not self.test_rows:
            return
        out_dir = self.hparams.report_dir or self.trainer.log_dir or self.trainer.default_root_dir
        info = {
            "class_names": list(self._metrics["test"].class_names) if "test" in self._metrics else [],
            "n_cases": len({r["case_id"] for r in self.test_rows}),
            "checkpoint": str(self.trainer.ckpt_path) if self.trainer.ckpt_path else None,
            "distance_units": "mm where the pixel spacing is known, px where not (separate keys)",
        }
        write_report(Path(out_dir), self.test_summary, self.test_rows, info)
        self.test_report_dir = Path(out_dir)

    # ----------------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        opt = torch.optim.AdamW(
            self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas), eps=hp.eps
        )
        total = float(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1.0
        if not math.isfinite(total) or total <= 0:  # unbounded run: cosine needs a length
            if hp.scheduler == "cosine":
                raise GdkvmError("the cosine schedule needs trainer.max_steps or trainer.max_epochs")
            total = 1.0

        def factor(step: int) -> float:
            return lr_factor(step, int(total), hp.scheduler, hp.warmup_steps, hp.milestones, hp.gamma, hp.min_lr_ratio)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
