"""Turn the best checkpoint of a default-model run into the bundled weights file and its model-card data.

    python bench/make_default.py runs/default_model [--out gdkvm/weights/default.pt]

Reads the newest ``best*.ckpt`` and the newest ``metrics.json`` (written by ``gdkvm test``) under the run folder,
stores the network in fp16 (``gdkvm.checkpoint.save_weights``) with its input size, training data and held-out
metrics, and writes a MONAI-bundle-style ``metadata.json`` beside it. With mixed data (``MixedEchoDataModule``) the
held-out metrics are split into all test clips (``heldout_metrics``) and per source (``heldout_metrics_by_source``:
``camus``, ``echonet``), from the ``<source>/<metric>`` keys of ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdkvm import __version__  # noqa: E402
from gdkvm.checkpoint import load_model, model_spec, save_weights  # noqa: E402


def newest(root: Path, pattern: str) -> Path:
    found = sorted(root.rglob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no {pattern} under {root}")
    return found[-1]


SOURCES = ("camus", "echonet")


def describe_data(data: dict[str, Any]) -> str:
    """One line on the training data, from the DataModule's saved hyper-parameters."""
    seed, size = data.get("seed"), data.get("size")
    if "camus_synthetic" in data:  # gdkvm.data.mixed.MixedEchoDataModule
        views = len(data.get("views") or ("2CH", "4CH"))
        camus, echonet = int(data.get("camus_synthetic") or 0), int(data.get("echonet_synthetic") or 0)
        camus_text = f"{camus} synthetic CAMUS-format patients x {views} views"
        echonet_text = f"{echonet} synthetic EchoNet-format videos"
        parts = [
            camus_text if camus else f"CAMUS at {data.get('camus_root')}",
            echonet_text if echonet else f"EchoNet at {data.get('echonet_root')}",
        ]
        augment = "on" if data.get("augment", True) else "off"
        return f"{' + '.join(parts)} (seed {seed}, {size} px, augmentation {augment})"
    return f"synthetic CAMUS-format echo ({data.get('synthetic')} patients x 2 views, seed {seed})"


def split_sources(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(metrics over all clips, {source: its metrics}) from a metrics.json summary with ``<source>/<key>`` keys."""
    prefixes = tuple(f"{s}/" for s in SOURCES)
    overall = {k: v for k, v in summary.items() if not k.startswith(prefixes)}
    by_source = {s: {k[len(s) + 1 :]: v for k, v in summary.items() if k.startswith(f"{s}/")} for s in SOURCES}
    return overall, {s: m for s, m in by_source.items() if m}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, default=Path("gdkvm/weights/default.pt"))
    p.add_argument("--metadata", type=Path, default=Path("gdkvm/weights/metadata.json"))
    args = p.parse_args(argv)
    ckpt = newest(args.run, "best*.ckpt")
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    data = payload.get("datamodule_hyper_parameters") or {}
    metrics = json.loads(newest(args.run, "metrics.json").read_text())
    net = load_model(ckpt)
    if isinstance(getattr(net, "config", None), dict) and "ops_backend" in net.config:
        net.config["ops_backend"] = "auto"  # the shipped model picks its op backend where it runs, whatever trained it
    overall, by_source = split_sources(metrics.get("summary", {}))
    info = {
        "input_size": int(data.get("size", 112)),
        "num_frames": int(data.get("num_frames", 10)),
        "labels": list(data.get("labels", ["lv"])),
        "trained_on": describe_data(data),
        "global_step": int(payload.get("global_step", 0)),
        "source_checkpoint": ckpt.name,
        "heldout_metrics": overall,
        "heldout_metrics_by_source": by_source,
        "gdkvm_version": __version__,
    }
    args.out.unlink(missing_ok=True)
    save_weights(net, args.out, half=True, info=info)
    meta = {
        "schema": "gdkvm-bundle-metadata/1 (after the MONAI bundle metadata.json)",
        "name": "gdkvm default (synthetic)",
        "version": __version__,
        "task": "left-ventricle segmentation in echocardiography video (streaming, fully automatic)",
        "network": model_spec(net),
        "num_parameters": sum(t.numel() for t in net.parameters()),
        "inputs": {"frames": f"[B, T, 1, {info['input_size']}, {info['input_size']}] float in [0, 1], grayscale"},
        "outputs": {"logits": f"[B, T, 2, {info['input_size']}, {info['input_size']}] (background, LV cavity)"},
        "training_data": info["trained_on"] + "; NOT trained on patient data",
        "intended_use": "demonstration and software testing; NOT for clinical use",
        "training_config": "configs/experiment/default_model.yaml",
        "heldout_metrics": info["heldout_metrics"],
        "heldout_metrics_by_source": info["heldout_metrics_by_source"],
        "heldout_cases": metrics.get("info", {}).get("n_cases"),
        "weights": {"file": args.out.name, "dtype": "float16", "bytes": args.out.stat().st_size},
    }
    args.metadata.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {args.metadata} from {ckpt}")


if __name__ == "__main__":
    main()
