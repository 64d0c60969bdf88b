"""Compile every Triton kernel launch of both memory ops for an H100 (sm_90) on a machine without a GPU.

The interpreter (the CPU tests' Triton) runs kernel bodies as Python and accepts code that Triton's compiler rejects
(a loop-carried ``_`` that changes type, for one), and it says nothing about shared memory. This script runs the ops'
Triton paths with ``TRITON_INTERPRET=0`` on CPU tensors while ``JITFunction.run`` is replaced by a recorder: each
launch is compiled ahead of time for ``GPUTarget("cuda", 90, 32)`` (Triton's own front end, optimiser and ptxas,
all in the wheel) with the launch's constexprs, warps and stages, and nothing runs. Precision constexprs that the
CPU path sets to "ieee" are compiled as "tf32x3" (the CUDA path of fp32 inputs, the one with the most operand copies).

Run: ``TRITON_INTERPRET=0 python tests/ops/sm90_compile.py`` prints one line per distinct kernel compile
(``ok NAME shared=BYTES warps=W wgmma=SHAPES``) or ``FAIL NAME: reason``, and exits 1 on any failure, on a
shared-memory need above an H100's 227 KB per block, or on a tensor-core instruction narrower than 16 columns.
Used by tests/ops/test_sm90_compile.py in a subprocess. With ``--regs`` each line also gives ptxas's register count
and spill bytes per thread (a second ptxas pass over the PTX; for tuning, not in the test); with ``--ptx-hash`` a hash
of its PTX (run it in two trees to show that a refactor left a kernel's code unchanged).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # before any kernel is defined: real JITFunctions, not interpreted ones
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

SMEM_LIMIT = 232448  # bytes of shared memory one block may use on an H100 (227 KB)
TARGET = GPUTarget("cuda", 90, 32)
# tensor-core instructions in the PTX; narrower than 16 columns is the shape Triton 3.6 got wrong (triton#10629)
WGMMA = re.compile(r"wgmma\.mma_async\.sync\.aligned\.(m64n\d+k\d+)\.f32\.(\w+)\.")
LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "launch_cooperative_grid")
_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int32: "i32",
           torch.int64: "i64", torch.bool: "i1"}  # fmt: skip
results: dict[tuple, str] = {}


def _arg_type(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + _DTYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for argument {value!r}")


def _specialize(value: object) -> tuple[str, object]:
    """(type, hint) of one runtime argument as the JIT specialises it on a GPU: ints equal to 1 and None become
    constexprs; tensors on a 16-byte boundary and ints divisible by 16 get the divisibility hint "D" that lets the
    compiler vectorise loads (without it every element is a scalar load with its own 64-bit address)."""
    if value is None:
        return "constexpr", None
    if isinstance(value, bool):
        return "i1", None
    if isinstance(value, int) and value == 1:
        return "constexpr", 1
    hint = None
    if isinstance(value, torch.Tensor) and value.data_ptr() % 16 == 0:
        hint = "D"
    elif isinstance(value, int) and value % 16 == 0:
        hint = "D"
    return _arg_type(value), hint


def _record(self: JITFunction, *args: object, grid: object = None, warmup: bool = False, **kwargs: object) -> None:
    """Stand-in for ``JITFunction.run``: compiles this launch for sm_90 (once per distinct signature)."""
    options = {name: kwargs.pop(name) for name in LAUNCH_OPTIONS if name in kwargs}
    options.setdefault("num_warps", 4)
    options.setdefault("num_stages", 3)
    bound = dict(zip(self.arg_names, args, strict=False))
    bound.update(kwargs)
    signature, constexprs, attrs = {}, {}, {}
    for param in self.params:
        value = bound.get(param.name, param.default)
        spec = _specialize(value) if not param.is_constexpr else ("constexpr", value)
        if spec[0] == "constexpr":
            value = spec[1]
            if value == "ieee" and param.name in ("PREC", "SPREC", "RPREC"):
                value = "tf32x3"
            signature[param.name] = "constexpr"
            constexprs[(param.num,)] = value
        else:
            signature[param.name] = spec[0]
            if spec[1] == "D":
                attrs[(param.num,)] = [["tt.divisibility", 16]]
    key = (self.__name__, tuple(signature.items()), tuple(sorted(constexprs.items())), tuple(sorted(attrs)),
           tuple(sorted(options.items())))  # fmt: skip
    if key in results:
        return
    try:
        source = ASTSource(self, signature, constexprs=constexprs, attrs=attrs)
        compiled = triton.compile(source, target=TARGET, options=options)
        shared = int(compiled.metadata.shared)
        shapes = sorted(set(WGMMA.findall(compiled.asm["ptx"])))
        narrow = [f"{shape}.{kind}" for shape, kind in shapes if int(shape[4:].split("k")[0]) < 16]
        status = "ok" if shared <= SMEM_LIMIT and not narrow else "FAIL"
        wgmma = ",".join(f"{shape}.{kind}" for shape, kind in shapes) or "-"
        results[key] = f"{status} {self.__name__} shared={shared} warps={options['num_warps']} wgmma={wgmma}"
        if "--ptx-hash" in sys.argv:  # to show a refactor left a kernel's code as it was (compare two trees' output)
            ptx = re.split(r"\.section\s+\.debug", compiled.asm["ptx"])[0]  # the code, without its DWARF sections
            code = "\n".join(ln for ln in ptx.splitlines() if not ln.lstrip().startswith((".loc", ".file", "//")))
            results[key] += " ptx=" + hashlib.sha1(code.encode()).hexdigest()[:12]
            if os.environ.get("SM90_PTX_DIR"):
                Path(os.environ["SM90_PTX_DIR"], f"{self.__name__}-{len(results)}.ptx").write_text(code)
        if "--regs" in sys.argv:
            results[key] += " " + _ptxas_usage(compiled.asm["ptx"]) + f" stages={options['num_stages']}"
    except Exception as err:  # noqa: BLE001  (any compiler error is a finding to report)
        lines = [ln for ln in traceback.format_exception_only(err)[-1].splitlines() if ln.strip()]
        results[key] = f"FAIL {self.__name__}: {lines[-1][:400] if lines else type(err).__name__}"
    print(results[key], flush=True)


def _ptxas_usage(ptx: str) -> str:
    """``regs=N spill=B`` for one kernel's PTX, from ptxas -v of the wheel's own ptxas (sm_90a)."""
    from triton.backends.nvidia import compiler as nvidia_compiler

    try:  # the ptxas Triton itself uses for sm_90 (triton 3.9 ships two and picks by PTX version)
        ptxas = nvidia_compiler.get_ptxas(TARGET.arch).path
    except TypeError:  # older Triton: get_ptxas() takes no architecture
        ptxas = nvidia_compiler.get_ptxas().path
    src = Path(os.environ.get("TMPDIR", "/tmp")) / f"sm90_regs_{os.getpid()}.ptx"
    src.write_text(ptx)
    try:
        cmd = [ptxas, "-v", "--gpu-name", "sm_90a", str(src), "-o", os.devnull]
        report = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stderr
    finally:
        src.unlink(missing_ok=True)
    regs = re.search(r"Used (\d+) registers", report)
    spill = re.search(r"(\d+) bytes spill stores", report)
    return f"regs={regs.group(1) if regs else '?'} spill={spill.group(1) if spill else '?'}"


def frame_cases() -> None:
    from gdkvm.ops.frame.autograd import frame_gated_delta_step_triton, frame_gated_delta_triton
    from gdkvm.ops.frame.tuning import TUNING

    defaults = dict(TUNING)
    walk = {"walk_readout": 2}  # the lean walk reading out O_t itself
    spread = {"gram_kk_spread": 1}  # K^T K over the Gram's column programs
    f32, b16 = torch.float32, torch.bfloat16
    for dtype, (b, t, n, dk, dv, heads), h0, sliced, fused, cols, lean, hand, extra in (
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 0, 1, 0, {}),  # the paper's sizes, lean parallel recurrence
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 0, 0, 0, {}),  # fwd_parallel_kernel (the old walk)
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 3, 0, 1, 0, {}),  # the same in one launch (compiled only)
        (f32, (2, 3, 64, 64, 256, 8), True, 1, 0, 0, 1, 1, {}),  # Gram and readout in hand-made 3xTF32
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 128, 1, 1, {}),  # the same, wide Gram programs
        (f32, (2, 3, 64, 64, 256, 8), True, 1, 0, 128, 1, 0, {}),  # wide Gram programs, lean walk of two heads
        (b16, (2, 3, 196, 64, 256, 8), True, 1, 3, 0, 1, 0, {}),
        (b16, (2, 3, 196, 64, 256, 8), True, 1, 0, 256, 1, 0, {}),
        (f32, (1, 2, 64, 128, 512, 8), True, 1, 3, 0, 1, 0, {}),  # largest supported Dk, Dv
        (f32, (1, 2, 64, 128, 512, 8), True, 0, 0, 256, 1, 0, {}),  # the one-program reverse walk
        (f32, (2, 3, 50, 48, 96, 4), False, 0, 1, 0, 1, 0, {}),  # Dv / H = 24: one-program-per-clip recurrence
        (f32, (2, 3, 50, 48, 96, 4), True, 1, 1, 64, 1, 0, {}),
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 0, 1, 1, walk),  # hand-made 3xTF32
        (f32, (2, 3, 100, 64, 256, 8), True, 1, 0, 0, 1, 0, walk),  # tf32x3, ragged pixel tiles
        (b16, (2, 3, 196, 64, 256, 8), False, 1, 0, 128, 1, 0, walk),  # bf16 (TF32), slices of two heads
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 0, 1, 1, {**spread, "readout_bv": 32}),
        (b16, (2, 3, 196, 128, 512, 8), True, 1, 0, 0, 1, 0, {**spread, "readout_bv": 16}),
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 0, 1, 1, {"walk_overlap": 1}),  # the Gram beside a waiting walk
        (b16, (2, 3, 196, 64, 256, 8), True, 1, 0, 0, 1, 0, {"walk_overlap": 1, **walk}),
        (f32, (2, 3, 64, 64, 256, 8), True, 1, 0, 0, 1, 1, {"walk_overlap": 2}),  # and the readout beside it
        (b16, (2, 3, 196, 64, 256, 8), False, 1, 0, 0, 1, 0, {"walk_overlap": 2}),
        (f32, (2, 3, 64, 64, 256, 8), False, 1, 0, 0, 1, 1, {"walk_overlap": 2, "spin_sleep": 256}),  # waits nap
        (b16, (2, 3, 196, 64, 256, 8), True, 1, 0, 0, 1, 0, {"walk_overlap": 1, "spin_sleep": 256}),
    ):
        TUNING.update(defaults)
        TUNING.update(extra)  # knobs of one case only
        TUNING["bwd_sliced"] = sliced
        TUNING["fused_fwd"] = fused
        TUNING["gram_cols"] = cols
        TUNING["fast_lean"] = lean
        TUNING["gram_hand3"] = TUNING["readout_hand3"] = hand
        TUNING["readout_cols"] = 256 if hand else 0  # readout programs looping over four column tiles
        TUNING["fast_wide_slices"] = 2 if cols else 1  # walkers of two heads where the wide Gram runs
        TUNING["bwd_persistent"] = 2 * (h0 and sliced)  # the one-launch walk (compiled only, never run here)
        k = torch.softmax(torch.randn(b, t, n, dk), -1).to(dtype).requires_grad_()
        v = torch.randn(b, t, n, dv).to(dtype).requires_grad_()
        params = [torch.randn(dv, heads) / dv**0.5, torch.randn(dv, heads) / dv**0.5, torch.zeros(heads),
                  torch.zeros(heads)]  # fmt: skip
        params = [p.requires_grad_() for p in params]
        state = torch.randn(b, dk, dv).requires_grad_() if h0 else None
        o, final = frame_gated_delta_triton(k, v, *params, heads=heads, initial_state=state, output_final_state=True)
        (o.float().sum() + final.sum()).backward()
        with torch.no_grad():
            frame_gated_delta_step_triton(k[:, 0], v[:, 0], *params, heads=heads, state=state)
    TUNING.update(defaults)


def token_cases() -> None:
    from gdkvm.ops.gated_delta.chunk import chunk_gated_delta_triton

    cases = (  # (B, T, H, K, V), dtype, per-channel gate, environment of the kernels' paths
        ((1, 200, 2, 64, 64), torch.bfloat16, False, {}),
        ((1, 200, 2, 64, 64), torch.bfloat16, False, {"GDKVM_TOKEN_SOLVE": "regs"}),
        ((1, 200, 2, 128, 128), torch.bfloat16, False, {"GDKVM_TOKEN_SOLVE": "regs"}),
        ((1, 200, 2, 64, 32), torch.bfloat16, False, {"GDKVM_TOKEN_SEGMENTS": "3"}),
        ((1, 200, 2, 128, 128), torch.bfloat16, True, {"GDKVM_TOKEN_O": "split"}),
        ((1, 130, 2, 100, 60), torch.float32, True, {"GDKVM_TOKEN_SEGMENTS": "2"}),
        ((1, 300, 2, 64, 32), torch.bfloat16, False, {"GDKVM_TOKEN_SEGMENTS": "3", "GDKVM_TOKEN_PRECISION": "fast"}),
        ((1, 200, 2, 128, 128), torch.bfloat16, True, {"GDKVM_TOKEN_O": "split", "GDKVM_TOKEN_PRECISION": "fast"}),
        ((1, 300, 2, 256, 96), torch.bfloat16, False, {}),  # two segments (auto) at K 256
        ((1, 200, 2, 64, 64), torch.bfloat16, False, {"GDKVM_TOKEN_SOLVE": "doubling", "GDKVM_TOKEN_O": "folded"}),
        ((1, 200, 2, 128, 128), torch.bfloat16, True, {"GDKVM_TOKEN_SOLVE": "doubling", "GDKVM_TOKEN_O": "folded"}),
        ((1, 300, 2, 64, 32), torch.bfloat16, False, {"GDKVM_TOKEN_O": "folded", "GDKVM_TOKEN_PRECISION": "fast"}),
        ((1, 300, 2, 64, 32), torch.bfloat16, False, {"GDKVM_TOKEN_DECAY": "value", "GDKVM_TOKEN_PRECISION": "fast"}),
        ((1, 300, 2, 64, 32), torch.bfloat16, False, {"GDKVM_TOKEN_DECAY": "key", "GDKVM_TOKEN_HILO": "both"}),
        ((1, 300, 2, 64, 64), torch.bfloat16, False, {"GDKVM_TOKEN_DECAY": "keyt", "GDKVM_TOKEN_PRECISION": "fast"}),
        ((1, 300, 2, 64, 64), torch.bfloat16, False, {"GDKVM_TOKEN_OVERLAP": "2", "GDKVM_TOKEN_SEGMENTS": "1"}),
        ((1, 200, 2, 64, 64), torch.bfloat16, False, {"GDKVM_TOKEN_BWD": "prepass", "GDKVM_TOKEN_SEGMENTS": "1"}),
        ((1, 200, 2, 128, 128), torch.bfloat16, True, {"GDKVM_TOKEN_BWD": "prepass", "GDKVM_TOKEN_SEGMENTS": "1"}),
        ((1, 300, 2, 256, 96), torch.bfloat16, False, {"GDKVM_TOKEN_SEGMENTS": "1"}),  # the default prepass at K 256
        ((1, 300, 2, 64, 64), torch.bfloat16, False, {"GDKVM_TOKEN_PREP": "split", "GDKVM_TOKEN_PRECISION": "fast"}),
        ((1, 200, 2, 128, 128), torch.bfloat16, False, {"GDKVM_TOKEN_PREP": "split"}),
        ((1, 130, 2, 100, 60), torch.float32, False, {"GDKVM_TOKEN_PREP": "split"}),
        (
            (1, 300, 2, 64, 32),
            torch.bfloat16,
            False,
            {"GDKVM_TOKEN_BWD": "prepass", "GDKVM_TOKEN_SEGMENTS": "1", "GDKVM_TOKEN_PRECISION": "fast"},
        ),
    )
    for (b, t, h, kd, vd), dtype, channel, env in cases:
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            q, k = (torch.nn.functional.normalize(torch.randn(b, t, h, kd), dim=-1).to(dtype) for _ in range(2))
            v = torch.randn(b, t, h, vd).to(dtype)
            g = torch.nn.functional.logsigmoid(torch.randn(b, t, h, *((kd,) if channel else ())))
            beta = torch.rand(b, t, h).to(dtype)
            leaves = [x.requires_grad_() for x in (q, k, v, g, beta)]
            h0 = torch.randn(b, h, kd, vd).requires_grad_()
            o, final = chunk_gated_delta_triton(*leaves, scale=kd**-0.5, initial_state=h0, output_final_state=True)
            (o.float().sum() + final.sum()).backward()
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def main() -> int:
    JITFunction.run = _record
    for cases in (frame_cases, token_cases):
        try:
            cases()
        except Exception:  # noqa: BLE001
            print(f"FAIL {cases.__name__} (host code):\n{traceback.format_exc()}", flush=True)
            return 1
    failed = [line for line in results.values() if line.startswith("FAIL")]
    print(f"{len(results)} kernel compiles for sm_90, {len(failed)} failed", flush=True)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
