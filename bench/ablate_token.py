"""Where the token rule's forward launches spend their time: each launch timed with one part of its kernel removed.

Every variant but those named "+..." computes WRONG results on purpose; only its time means something ("+..."
variants are faster candidates that keep the results right; "+const", H, K, V as compile-time constants, measured
that way on 2026-11-29, is now the library's default and gone from the list). The library is not touched: the source
of ``gdkvm/ops/gated_delta/chunk_fwd.py`` is patched as text into a private module per variant (so each variant
compiles its own kernels), the patch is checked to apply exactly once, and the launches of that module are timed on
the benchmark's inputs. The unpatched copy ("none") is the baseline of the same run.

Run on a CUDA machine from the repository root::

    python3 bench/ablate_token.py                          # prep and state forward at B4 T10240 and B8 T4096 H16 K128
    GDKVM_TOKEN_PRECISION=fast python3 bench/ablate_token.py --shapes B4T10240H8K64V64
    TRITON_INTERPRET=1 python3 bench/ablate_token.py --smoke   # CPU: every patch applies and its kernels run

Prints one table row per (shape, launch, variant): ms per launch and the share of the baseline it saves.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ops_token import make_inputs  # noqa: E402

SOURCE = ROOT / "gdkvm" / "ops" / "gated_delta" / "chunk_fwd.py"
SHAPES = {  # name: (B, T, H, K, V)
    "B4T10240H8K64V64": (4, 10240, 8, 64, 64),
    "B8T4096H16K128V128": (8, 4096, 16, 128, 128),
    "B1T25600H8K64V32": (1, 25600, 8, 64, 32),
    "B4T2560H8K64V64": (4, 2560, 8, 64, 64),
    "smoke": (1, 100, 2, 32, 24),
}
# launch -> variant -> [(text to replace, replacement)], each text present exactly once in chunk_fwd.py.
ABLATIONS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "prep": {
        "none": [],
        # the solve the prep runs by default at 4 warps (fp32 intermediates) and at 2 (fast mode), see solve_mode
        "no_solve": [
            ("t_inv = _solve_unit_lower_doubling(lower, BT, PREC)", "t_inv = lower"),
            ("t_inv = _solve_unit_lower_regs(lower, BT, BS, PREC)", "t_inv = lower"),
        ],
        "no_a_store": [("        tl.store(a_ptr + p_t, (p_qk * scale).to(a_ptr.dtype.element_ty), mask=m_t)\n", "")],
        "no_t_store": [("    if STORE_T:\n        tl.store(t_ptr + p_t, t_inv, mask=m_t)\n", "")],
        "no_w": [("    tl.store(w_ptr + th[:, None] * K + cols[None, :], w_dt, mask=m_k)\n", "")],
        "no_u": [
            ("    for i_v in range(tl.cdiv(V, BV)):\n        cv = i_v * BV",
             "    for i_v in range(0):\n        cv = i_v * BV"),
        ],
    },
    "state_fwd": {
        "none": [],
        "no_o": [("    emit_o = not split_o  #", "    emit_o = False  #")],
        "no_a_load": [
            ("            at = tl.load(a_ptr + th[:, None] * BT + o_i[None, :], mask=mrow[:, None], other=0.0)\n",
             "            at = tl.zeros([BT, BT], dtype=a_ptr.dtype.element_ty)\n"),
        ],
        "no_ws": [("        pseudo = ut - tl.dot(wt, s_dt)\n", "        pseudo = ut\n")],
        "no_update": [
            ("        state = _state_update(kt, pseudo, state, G, G_last, dt, PER_CHANNEL, SPLIT16, KEY_DECAY)\n",
             "        state = state * 0.999\n"),
        ],
    },
}  # fmt: skip


def patched_module(launch: str, variant: str, workdir: Path) -> ModuleType:
    """A private copy of chunk_fwd.py with ``variant``'s patches applied (ValueError if a patch does not apply
    exactly once: the library changed and the ablation must follow)."""
    text = SOURCE.read_text()
    for old, new in ABLATIONS[launch][variant]:
        if text.count(old) != 1:
            raise ValueError(f"ablation {launch}/{variant}: {old!r} occurs {text.count(old)} times in {SOURCE}")
        text = text.replace(old, new)
    path = workdir / f"_ablate_{launch}_{variant}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_call(module: ModuleType, launch: str, x: dict[str, torch.Tensor]):
    """A closure running one launch of ``module`` (its state pass on the baseline's prep, which it never writes)."""
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum

    key_dim, value_dim = x["q"].shape[-1], x["v"].shape[-1]
    chunk, scale = (64 if key_dim <= 128 else 32), key_dim**-0.5
    gc = chunk_local_cumsum(x["g"], chunk)
    prep = module.launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], scale, chunk)
    if launch == "prep":
        return lambda: module.launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], scale, chunk)
    # output_final_state=True keeps the state live: without a store of it, removing o ("no_o") would let the
    # compiler drop the whole recurrence as dead code (the first GPU run timed 0.045 of 0.467 ms that way).
    return lambda: module.launch_state_fwd(x["q"], x["k"], gc, prep, value_dim, scale, None, True, False, chunk)


def run(
    shapes: list[str], launches: list[str], smoke: bool, warmup: int, rep: int, only: list[str] | None = None
) -> list[dict[str, object]]:
    device = "cpu" if smoke else "cuda"
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["smoke"] if smoke else shapes:
            x = make_inputs(SHAPES[name], device=device)
            for launch in launches:
                base = None
                for variant in [v for v in ABLATIONS[launch] if v == "none" or not only or v in only]:
                    call = launch_call(patched_module(launch, variant, Path(tmp)), launch, x)
                    if smoke:
                        call()
                        ms = float("nan")
                    else:
                        import triton.testing

                        call()
                        torch.cuda.synchronize()
                        ms = float(triton.testing.do_bench(call, warmup=warmup, rep=rep))
                    base = ms if variant == "none" else base
                    rows.append({"shape": name, "launch": launch, "variant": variant, "ms": ms})
                    saved = "" if variant == "none" or smoke else f"{100 * (1 - ms / base):5.1f}%"  # < 0: slower
                    print(f"| {name} | {launch} | {variant} | {ms:.4f} | {saved} |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["B4T10240H8K64V64", "B8T4096H16K128V128"], choices=SHAPES)
    parser.add_argument("--launches", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    parser.add_argument("--smoke", action="store_true", help="CPU under TRITON_INTERPRET=1: patches apply, kernels run")
    parser.add_argument("--variants", nargs="*", default=None, help="only these variants (and the baseline)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rep", type=int, default=50)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("needs a CUDA device (or --smoke under TRITON_INTERPRET=1)")
    print("| shape | launch | removed | ms per launch | saved |\n|---|---|---|---|---|")
    rows = run(args.shapes, args.launches, args.smoke, args.warmup, args.rep, args.variants)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
