"""Export the streaming per-frame model (memory state as explicit inputs and outputs) to ONNX or TorchScript.

The exported graph is one ``step``: ``(frame [B, 1, S, S], *state) -> (prob [B, C+1, S, S], *new_state)``, with the
state tensors in :func:`state_names` order. A runtime streams a clip by feeding each step's state outputs back in;
:func:`verify_export` does exactly that against PyTorch over a whole clip.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gdkvm.errors import GdkvmError, InputError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")


def state_names(model: nn.Module, size: int) -> list[str]:
    """Names of the streaming state tensors, in the order the exported step takes and returns them."""
    return list(model.init_state(1, size, size, device="cpu"))


class StreamingStep(nn.Module):
    """``model.step`` with the state dict flattened into positional tensors (export-friendly).

    Args:
        model: a ``GDKVM``.
        names: state keys in order (see :func:`state_names`).
    """

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """frame [B, 1, S, S] in [0, 1] and the state tensors -> (prob [B, C+1, S, S], *new state tensors)."""
        logits, new = self.model.step(frame, dict(zip(self.names, state)))
        return (torch.softmax(logits.float(), dim=1), *[new[k] for k in self.names])


@contextlib.contextmanager
def _torch_ops(model: nn.Module) -> Iterator[None]:
    """Run the memory through the plain-torch reference (exportable; Triton kernels are not)."""
    memory = getattr(model, "memory", None)
    old = getattr(memory, "backend", None)
    if memory is not None:
        memory.backend = "naive"
    try:
        yield
    finally:
        if memory is not None:
            memory.backend = old


def _example(model: nn.Module, size: int) -> tuple[torch.Tensor, ...]:
    state = model.init_state(1, size, size, device="cpu")
    return (torch.rand(1, 1, size, size), *state.values())


def export_model(model: nn.Module, path: str | Path, fmt: str, *, size: int, opset: int = 17) -> Path:
    """Write the streaming step of ``model`` (on the CPU, fp32) to ``path``.

    Args:
        model: a ``GDKVM``.
        path: output file (``.onnx`` or ``.pt``).
        fmt: ``"onnx"`` or ``"torchscript"``.
        size: square frame size S (a multiple of 16), fixed in the graph.
        opset: ONNX opset.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    names = state_names(model, size)
    wrapper = StreamingStep(model, names).eval()
    example = _example(model, size)
    with torch.no_grad(), _torch_ops(model):
        if fmt == "torchscript":
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            traced.save(str(path))
        else:
            torch.onnx.export(
                wrapper,
                example,
                str(path),
                input_names=["frame", *names],
                output_names=["prob", *[f"new_{n}" for n in names]],
                opset_version=opset,
                dynamo=False,
            )
    log.info("exported %s to %s (state: %s)", fmt, path, ", ".join(names))
    return path


def _runner(path: Path, fmt: str):
    if fmt == "torchscript":
        module = torch.jit.load(str(path)).eval()
        return lambda inputs: [t.numpy() for t in module(*[torch.from_numpy(x) for x in inputs])]
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - onnxruntime is in the test extra
        raise GdkvmError("verifying an ONNX export needs onnxruntime (pip install onnxruntime)") from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def verify_export(model: nn.Module, path: str | Path, fmt: str, frames: np.ndarray) -> float:
    """Stream a clip through PyTorch and through the exported file; return the max abs difference of probabilities.

    Args:
        model: the model that was exported.
        path: the exported file.
        fmt: its format.
        frames: [T, S, S] float32 in [0, 1] at the exported size.
    """
    path = Path(path)
    model = model.cpu().float().eval()
    size = frames.shape[-1]
    names = state_names(model, size)
    wrapper = StreamingStep(model, names).eval()
    run = _runner(path, fmt)
    state_t = list(model.init_state(1, size, size, device="cpu").values())
    state_x = [s.numpy().copy() for s in state_t]
    worst = 0.0
    with torch.no_grad(), _torch_ops(model):
        for frame in frames:
            x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None, None]
            ref = wrapper(x, *state_t)
            out = run([x.numpy(), *state_x])
            worst = max(worst, float(np.abs(ref[0].numpy() - out[0]).max()))
            state_t, state_x = list(ref[1:]), [np.asarray(o) for o in out[1:]]
    return worst
