"""Export the streaming per-frame model (memory state as explicit inputs and outputs) to ONNX or TorchScript.

The exported graph is one ``step``: ``(frame [B, 1, S, S], *state) -> (probabilities [B, C+1, S, S], *new_state)``
(softmax over background + C classes), with the state tensors in :func:`state_names` order (for the default model:
``memory`` [B, Dk, Dv], ``sensory`` [B, Cs, S/16, S/16], ``summary_sum`` [B, Q, E], ``summary_area`` [B, Q, 1],
``prob`` [B, C, S, S]). A runtime streams a clip by starting from zeros (:func:`initial_state`) and feeding each step's
state outputs back in; :func:`verify_export` does exactly that against PyTorch over a whole clip.

ONNX goes through torch's TorchScript-based exporter (``dynamo=False``): it needs only ``onnx`` (the torch.export-based
exporter would also need ``onnxscript``). The frame size S and the batch size B = 1 are fixed in the graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gdkvm.errors import GdkvmError, InputError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
OUTPUT_NAME = "probabilities"  # the ONNX graph's first output ("prob" is a state tensor of value-feedback models)


def state_names(model: nn.Module, size: int) -> list[str]:
    """Names of the streaming state tensors, in the order the exported step takes and returns them."""
    return list(model.init_state(1, size, size, device="cpu"))


def initial_state(model: nn.Module, size: int, batch: int = 1) -> list[np.ndarray]:
    """The zero state a runtime starts a clip from: float32 arrays in :func:`state_names` order."""
    return [t.numpy().copy() for t in model.init_state(batch, size, size, device="cpu").values()]


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


def _repeat_interleave_symbolic(g, x, repeats, dim=None, output_size=None) -> torch._C.Value:
    """torch's own ``aten::repeat_interleave`` ONNX symbolic, handed a private copy of the ``dim`` constant.

    That symbolic normalises a negative ``dim`` IN PLACE (``dim += rank``) on the tensor held by the constant node,
    and the exporter shares one constant node among all uses of the same integer: after the memory gates'
    ``repeat_interleave(..., dim=-1)`` every later ``-1`` of the graph (``flatten(2)``, ``cat(dim=-1)``) read 2 and
    the exported graph was wrong (failed shape inference). A fresh constant leaves the shared one intact.
    """
    from torch.onnx import symbolic_opset13

    node = dim.node() if isinstance(dim, torch._C.Value) else None
    if node is not None and node.kind() == "onnx::Constant" and node.hasAttribute("value"):
        dim = g.op("Constant", value_t=node.t("value").clone())
    return symbolic_opset13.repeat_interleave(g, x, repeats, dim, output_size)


@contextlib.contextmanager
def _onnx_workarounds(opset: int) -> Iterator[None]:
    """Install the exporter work-around for one ONNX export, and silence its deprecation notice."""
    torch.onnx.register_custom_op_symbolic("aten::repeat_interleave", _repeat_interleave_symbolic, opset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based ONNX export"
            yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::repeat_interleave", opset)


def require_onnx(export: bool = True, runtime: bool = False) -> None:
    """Raise a one-line ``GdkvmError`` when ``onnx`` (to export) or ``onnxruntime`` (to run a file) is missing.

    Neither is a dependency of gdkvm itself (both are in its ``export`` and ``test`` extras).
    """
    wanted = [name for name, needed in (("onnx", export), ("onnxruntime", runtime)) if needed]
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise GdkvmError(f"ONNX {'export' if export else 'inference'} needs {' and '.join(missing)}: "
                         f"pip install {' '.join(missing)}")  # fmt: skip


def check_out_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output path that exists (unless ``overwrite``), is a folder, or lies in a folder we cannot write.

    Creates the missing parent folders. Raises ``InputError`` with the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name", path)
    if path.exists() and not overwrite:
        raise InputError("exists already; refusing to overwrite it (use --force)", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create its folder: {err.strerror or err}", path) from err
    if not os.access(path.parent, os.W_OK):
        raise InputError("its folder is not writable", path)
    return path


def export_model(
    model: nn.Module, path: str | Path, fmt: str, *, size: int, opset: int = 17, overwrite: bool = False
) -> Path:
    """Write the streaming step of ``model`` (on the CPU, fp32, batch 1) to ``path``.

    The file appears only when the export succeeded (written to a temporary file beside it, then renamed).

    Args:
        model: a ``GDKVM``.
        path: output file (``.onnx`` or ``.pt``).
        fmt: ``"onnx"`` or ``"torchscript"``.
        size: square frame size S (a multiple of 16), fixed in the graph.
        opset: ONNX opset.
        overwrite: replace an existing file instead of refusing.

    Returns:
        the path written.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_onnx()
    path = check_out_path(path, overwrite)
    model = model.cpu().float().eval()
    names = state_names(model, size)
    wrapper = StreamingStep(model, names).eval()
    example = (torch.rand(1, 1, size, size), *model.init_state(1, size, size, device="cpu").values())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), _torch_ops(model), warnings.catch_warnings():
            # shape checks that become constants in the trace (the graph is for one fixed size anyway) and the ONNX
            # constant folder's notes are expected here, not news for the user
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            if fmt == "torchscript":
                torch.jit.trace(wrapper, example, check_trace=False).save(tmp)
            else:
                with _onnx_workarounds(opset):
                    torch.onnx.export(
                        wrapper,
                        example,
                        tmp,
                        input_names=["frame", *names],
                        output_names=[OUTPUT_NAME, *[f"new_{n}" for n in names]],
                        opset_version=opset,
                        dynamo=False,
                    )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; give it the permissions of a plain new file
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("exported %s to %s (state: %s)", fmt, path, ", ".join(names))
    return path


def load_runner(path: str | Path, fmt: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A function running one exported step: ``[frame, *state]`` float32 arrays -> ``[prob, *new_state]``.

    ONNX runs in onnxruntime on the CPU; TorchScript in ``torch.jit``.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "torchscript":
        module = torch.jit.load(str(path)).eval()

        def run_ts(inputs: list[np.ndarray]) -> list[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in module(*[torch.from_numpy(x) for x in inputs])]

        return run_ts
    require_onnx(export=False, runtime=True)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def stream_exported(run: Callable, frames: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
    """Stream a clip through an exported step (see :func:`load_runner`).

    Args:
        run: the step function.
        frames: [T, S, S] float32 in [0, 1].
        state: the initial state (:func:`initial_state`).

    Returns:
        [T, C+1, S, S] float32 probabilities.
    """
    out = []
    for frame in frames:
        x = np.ascontiguousarray(frame, dtype=np.float32)[None, None]
        prob, *state = run([x, *state])
        out.append(np.asarray(prob)[0])
    return np.stack(out)


def stream_torch(model: nn.Module, frames: np.ndarray) -> np.ndarray:
    """The PyTorch reference: [T, S, S] float32 frames -> [T, C+1, S, S] probabilities, streamed step by step."""
    model = model.cpu().float().eval()
    size = frames.shape[-1]
    names = state_names(model, size)
    wrapper = StreamingStep(model, names).eval()
    state = list(model.init_state(1, size, size, device="cpu").values())
    out = []
    with torch.no_grad(), _torch_ops(model):
        for frame in frames:
            prob, *state = wrapper(torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None, None], *state)
            out.append(prob[0].numpy())
    return np.stack(out)


def verify_export(model: nn.Module, path: str | Path, fmt: str, frames: np.ndarray) -> float:
    """Stream a clip through PyTorch and through the exported file; return the max abs difference of probabilities.

    Args:
        model: the model that was exported.
        path: the exported file.
        fmt: its format.
        frames: [T, S, S] float32 in [0, 1] at the exported size.
    """
    ref = stream_torch(model, frames)
    got = stream_exported(load_runner(path, fmt), frames, initial_state(model, frames.shape[-1]))
    return float(np.abs(ref - got).max())
