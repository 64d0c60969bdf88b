"""The bundled model's card (docs/model_card.md) and its machine-readable metadata (gdkvm/weights/metadata.json):
MONAI-bundle-style keys present, and every number the card states equal to the metadata (so they cannot drift).

When the default model is retrained, ``python -m tests.test_model_card`` prints the card's metrics table for the new
metadata.json (paste it between the ``metrics`` markers of the card).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "docs" / "model_card.md"
METADATA = REPO / "gdkvm" / "weights" / "metadata.json"
WEIGHTS = REPO / "gdkvm" / "weights" / "default.pt"

# MONAI bundle metadata.json fields (their names where MONAI has one) that a reader of any bundle looks for
REQUIRED = (
    "name", "version", "task", "description", "authors", "license", "data_source", "training_data", "intended_use",
    "metrics", "inputs", "outputs", "references", "network", "num_parameters", "heldout_metrics", "weights",
)  # fmt: skip
COLUMNS = (("dice", "Dice", 4), ("dice_pooled", "Dice (pooled)", 4), ("iou", "IoU", 4), ("hd95_mm", "HD95 [mm]", 2),
           ("assd_mm", "ASSD [mm]", 2))  # fmt: skip
ROWS = (("", "all frames"), ("_ED", "ED frames"), ("_ES", "ES frames"))
BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"


def metrics_table(meta: dict) -> str:
    """The card's metrics table (markdown) from metadata.json: all / ED / ES frames, then per source if present."""
    groups = [("", meta["heldout_metrics"])]
    groups += [(f"{src}: ", m) for src, m in sorted((meta.get("heldout_metrics_by_source") or {}).items())]
    head = ["held-out synthetic test set", "n", *[title for _, title, _ in COLUMNS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for prefix, metrics in groups:
        for suffix, name in ROWS:
            if f"dice{suffix}" not in metrics:
                continue
            n = metrics.get(f"n_images{suffix}", "")
            cells = [_cell(metrics.get(key + suffix), digits) for key, _, digits in COLUMNS]
            lines.append("| " + " | ".join([prefix + name, str(n), *cells]) + " |")
    return "\n".join(lines)


def _cell(value: float | None, digits: int) -> str:
    """A table cell; "n/a" where the metric is undefined (EchoNet has no pixel spacing, so no distances in mm)."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(METADATA.read_text())


@pytest.fixture(scope="module")
def card() -> str:
    return CARD.read_text()


def test_metadata_has_bundle_fields(meta) -> None:
    missing = [k for k in REQUIRED if k not in meta]
    assert not missing, f"metadata.json lacks {missing}"
    assert "NOT trained on patient data" in meta["training_data"] and "no patient data" in meta["data_source"]
    assert "NOT for clinical use" in meta["intended_use"]
    assert meta["references"] and all(isinstance(r, str) and r for r in meta["references"])
    assert meta["inputs"] and meta["outputs"]
    # the headline metrics repeat the full held-out summary exactly
    headline = {k: v for k, v in meta["metrics"].items() if isinstance(v, float)}
    assert headline and all(meta["heldout_metrics"][k] == v for k, v in headline.items())
    assert meta["weights"]["file"] == WEIGHTS.name and meta["weights"]["bytes"] == WEIGHTS.stat().st_size


def test_metadata_describes_the_bundled_weights(meta) -> None:
    from gdkvm.checkpoint import load_model

    model = load_model("default")
    assert sum(p.numel() for p in model.parameters()) == meta["num_parameters"]
    assert str(model.input_size) in meta["inputs"]["frames"]
    assert meta["network"]["init_args"]["num_classes"] == model.num_classes


def test_card_numbers_match_metadata(card, meta) -> None:
    assert BEGIN in card and END in card, "the card's metrics table needs its markers"
    table = card.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == metrics_table(meta), f"metrics table out of date; replace it with:\n{metrics_table(meta)}"
    params = f"{meta['num_parameters'] / 1e6:.2f} M"
    assert params in card, f"the card should state the parameter count as {params}"
    assert f"{meta['num_parameters']:,}" in card
    assert f"{meta['weights']['bytes'] / 1e6:.1f} MB" in card
    size = re.search(r"\[B, T, 1, (\d+), \1\]", meta["inputs"]["frames"]).group(1)
    assert f"{size} x {size}" in card


def test_card_says_what_it_is_not(card, meta) -> None:
    assert "NOT trained on patient data" in card and "NOT for clinical use" in card
    assert meta["training_data"] in card and meta["intended_use"].split(";")[0] in card
    commands = (
        "gdkvm fit --config configs/experiment/camus.yaml",
        "gdkvm fit --config configs/experiment/echonet.yaml",
        "gdkvm export --format onnx",
        "gdkvm export --format torchscript",
    )
    for text in commands:
        assert text in card


def test_card_commands_name_existing_files(card) -> None:
    pattern = r"\b((?:configs|bench|gdkvm|docs|notebooks)/[\w./-]+\.(?:yaml|py|sh|json|ipynb))"
    for path in set(re.findall(pattern, card)):
        assert (REPO / path).is_file(), f"the card names {path}, which does not exist"


if __name__ == "__main__":
    print(metrics_table(json.loads(METADATA.read_text())))
