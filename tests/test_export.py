"""Streaming export (`gdkvm.export`, `gdkvm export`): ONNX in onnxruntime and TorchScript in torch.jit must match
PyTorch frame by frame over a whole clip, streaming the memory state through the graph's inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gdkvm.checkpoint import load_model
from gdkvm.cli import main
from gdkvm.data.sampling import resize_frames
from gdkvm.data.synthetic import make_clip
from gdkvm.errors import InputError
from gdkvm.export import (
    FORMATS,
    OUTPUT_NAME,
    export_model,
    initial_state,
    load_runner,
    state_names,
    stream_exported,
    stream_torch,
)
from gdkvm.model import build_model
from tests.helpers import tiny_model_file

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOL = 1e-4  # fp32, per pixel probability, every frame


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread avoids spin-waiting when the 2 cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _synthetic_clip(size: int, frames: int = 16) -> np.ndarray:
    """[T, S, S] float32 in [0, 1]: a whole synthetic beat-and-a-half at the model's size."""
    return resize_frames(make_clip(seed=3, frames=frames, fps=25.0)[0], size)


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


@pytest.fixture(scope="module")
def default_exports(default_model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    size = default_model.input_size
    return {fmt: export_model(default_model, folder / f"default.{fmt}", fmt, size=size) for fmt in FORMATS}


def _assert_streams_like_torch(model, path: Path, fmt: str, frames: np.ndarray) -> np.ndarray:
    ref = stream_torch(model, frames)
    got = stream_exported(load_runner(path, fmt), frames, initial_state(model, frames.shape[-1]))
    assert got.shape == ref.shape == (len(frames), model.num_classes + 1, *frames.shape[1:])
    per_frame = np.abs(got - ref).reshape(len(frames), -1).max(axis=1)
    assert per_frame.max() <= TOL, f"{fmt}: max |diff| per frame {per_frame}"
    return ref


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_model_export_streams_like_pytorch(default_model, default_exports, fmt) -> None:
    frames = _synthetic_clip(default_model.input_size)
    ref = _assert_streams_like_torch(default_model, default_exports[fmt], fmt, frames)
    lv = (ref[:, 1] > 0.5).mean(axis=(1, 2))
    assert (lv > 0.01).all(), "the default model should find the LV in every frame of a synthetic clip"


def test_onnx_graph_has_state_in_and_out(default_model, default_exports) -> None:
    graph = onnx.load(str(default_exports["onnx"]))
    onnx.checker.check_model(graph)
    names = state_names(default_model, default_model.input_size)
    assert [i.name for i in graph.graph.input] == ["frame", *names]
    assert [o.name for o in graph.graph.output] == [OUTPUT_NAME, *[f"new_{n}" for n in names]]

    def dims(v) -> list[int]:
        return [d.dim_value for d in v.type.tensor_type.shape.dim]

    state = initial_state(default_model, default_model.input_size)
    assert not any(a.any() for a in state), "a runtime starts a clip from all-zero state tensors (README, model card)"
    for value_in, value_out, arr in zip(graph.graph.input[1:], graph.graph.output[1:], state):
        assert dims(value_in) == dims(value_out) == list(arr.shape)


@pytest.mark.parametrize(
    ("fmt", "overrides"),
    [("onnx", {}), ("torchscript", {}), ("onnx", {"update_rule": "token", "num_classes": 3})],
)
def test_tiny_random_model_export(tmp_path, fmt, overrides) -> None:
    torch.manual_seed(1)
    model = build_model("small", **overrides).eval()
    path = export_model(model, tmp_path / f"tiny.{fmt}", fmt, size=64)
    rng = np.random.default_rng(0)
    _assert_streams_like_torch(model, path, fmt, rng.random((8, 64, 64), dtype=np.float32))


def test_export_refuses_bad_format_and_paths(tmp_path) -> None:
    model = build_model("small")
    with pytest.raises(InputError, match="unknown export format"):
        export_model(model, tmp_path / "m.tflite", "tflite", size=64)
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists already"):
        export_model(model, existing, "onnx", size=64)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(InputError, match="is a folder"):
        export_model(model, tmp_path, "onnx", size=64)
    with pytest.raises(InputError, match="cannot create its folder"):
        export_model(model, existing / "sub" / "m.onnx", "onnx", size=64)


def test_failed_export_leaves_no_file(tmp_path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_model(build_model("small"), tmp_path / "m.onnx", "onnx", size=64)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_verifies_and_needs_force(tmp_path, capsys) -> None:
    ckpt = tiny_model_file(tmp_path, input_size=64)
    out = tmp_path / "out" / "tiny.onnx"
    argv = ["export", "--format", "onnx", "--out", str(out), "--ckpt", str(ckpt), "--verify-frames", "4"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "64x64" in text and "memory" in text and "max |prob difference|" in text
    before = out.stat().st_mtime_ns
    assert main(argv) == 2
    assert "exists already" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert main([*argv, "--force", "--format", "torchscript"]) == 0
    assert torch.jit.load(str(out)) is not None  # replaced by the TorchScript file
    with pytest.raises(SystemExit) as err:
        main(["export", "--format", "tflite", "--out", str(tmp_path / "x")])
    assert err.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_onnx_without_onnx_installed_says_what_to_install(tmp_path, capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ONNX export needs onnx: pip install onnx" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
