"""Benchmark of the token rule: our chunkwise Triton op against fla-core's ``chunk_gated_delta_rule``.

Run on a CUDA machine from the repository root: ``python3 bench/ops_token.py`` (or ``python3 bench/ops.py --rule
token``). For each shape (bf16 q, k, v, beta; fp32 per-head log-decay g; L2-normalised q, k) it measures the median
time (``triton.testing.do_bench``) of the forward (inputs without grad) and of forward + backward (fixed random dO,
gradients of every input), the ns per token-head, and the HBM floor: bytes of q, k, v, o, g, beta in bf16 at
3.0 TB/s (forward) plus dO and the five gradients (forward + backward). fla-core (if importable; the script sets
FLA_DISABLE_BACKEND_DISPATCH=1) runs each case in its own subprocess, so a crash (fla 0.6.0 dies with an illegal
memory access at V=32 on triton 3.6) prints "crash" instead of killing the run; its output is also compared with ours.
Imports only torch, triton, the standard library and gdkvm.ops (and fla, optionally).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # name: (B, T, H, K, V)
    "B4T2560H8K64V64": (4, 2560, 8, 64, 64),
    "B4T10240H8K64V64": (4, 10240, 8, 64, 64),
    "B1T25600H8K64V32": (1, 25600, 8, 64, 32),
    "B4T2560H8K128V128": (4, 2560, 8, 128, 128),
    "B8T4096H16K128V128": (8, 4096, 16, 128, 128),
}
TARGETS = {64: 1.2, 128: 1.0}  # minimum speed-up over fla-core by key dimension
# fla-core 0.6.0 medians (ms, fwd / fwd+bwd) measured by the lead on one H100 80GB, torch 2.11, triton 3.6
# (docs DESIGN.md); used for a second speed-up column when fla cannot be run in this process tree.
FLA_ANCHORS = {
    "B4T2560H8K64V64": (0.424, 2.01),
    "B4T10240H8K64V64": (0.527, 2.61),
    "B4T2560H8K128V128": (0.588, 2.15),
    "B8T4096H16K128V128": (1.03, 3.95),
}
HBM_BYTES_PER_S = 3.0e12


def make_inputs(shape: tuple[int, int, int, int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """bf16 q, k (L2-normalised), v, beta (sigmoid) and fp32 g (logsigmoid) on the GPU, FLA's benchmark regime."""
    batch, length, heads, key_dim, value_dim = shape
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, device="cuda", generator=gen)

    return {
        "q": F.normalize(randn(batch, length, heads, key_dim), dim=-1).bfloat16(),
        "k": F.normalize(randn(batch, length, heads, key_dim), dim=-1).bfloat16(),
        "v": randn(batch, length, heads, value_dim).bfloat16(),
        "g": F.logsigmoid(randn(batch, length, heads)),
        "beta": torch.sigmoid(randn(batch, length, heads)).bfloat16(),
    }


def floors_us(shape: tuple[int, int, int, int, int]) -> tuple[float, float]:
    """HBM floors (us) at 3 TB/s, everything in bf16: forward reads q, k, v, g, beta and writes o; the backward reads
    q, k, v, g, beta, dO and writes dq, dk, dv, dg, dbeta."""
    batch, length, heads, key_dim, value_dim = shape
    token_heads = batch * length * heads
    fwd = token_heads * 2 * (2 * key_dim + 2 * value_dim + 2)
    bwd = token_heads * 2 * (4 * key_dim + 3 * value_dim + 4)
    return fwd / HBM_BYTES_PER_S * 1e6, (fwd + bwd) / HBM_BYTES_PER_S * 1e6


def time_case(fn, inputs: dict[str, torch.Tensor], mode: str, warmup: int, rep: int) -> float:
    """Median ms of ``fn(**inputs)`` (mode "fwd") or of it plus the backward of every input (mode "fwdbwd")."""
    import triton.testing

    if mode == "fwd":
        args = {n: t.detach() for n, t in inputs.items()}

        def call() -> None:
            with torch.no_grad():
                fn(**args)
    else:
        args = {n: t.detach().clone().requires_grad_() for n, t in inputs.items()}
        out, _ = fn(**args)
        d_out = torch.randn_like(out)
        leaves = list(args.values())

        def call() -> None:
            o, _ = fn(**args)
            torch.autograd.backward(o, d_out)

    for _ in range(3):  # compile and autotune outside the timed region
        call()
    torch.cuda.synchronize()
    return float(triton.testing.do_bench(call, warmup=warmup, rep=rep, grad_to_none=None if mode == "fwd" else leaves))


def ours(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    from gdkvm.ops import chunk_gated_delta

    return chunk_gated_delta(kw["q"], kw["k"], kw["v"], kw["g"], kw["beta"])


def fla_child(name: str, out_path: str, warmup: int, rep: int) -> None:
    """Subprocess body: times fla-core on one shape, saves its o for comparison, prints one JSON line."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    def fla(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return chunk_gated_delta_rule(kw["q"], kw["k"], kw["v"], g=kw["g"], beta=kw["beta"])

    inputs = make_inputs(SHAPES[name])
    result: dict[str, object] = {}
    with torch.no_grad():
        torch.save(fla(**inputs)[0].cpu(), out_path)
    result["fwd_ms"] = time_case(fla, inputs, "fwd", warmup, rep)
    print(json.dumps(result), flush=True)  # the forward survives even if the backward crashes
    try:
        result["fwdbwd_ms"] = time_case(fla, inputs, "fwdbwd", warmup, rep)
    except RuntimeError as err:  # fla's guard against Hopper + triton < 3.7.1 raises here
        result["fwdbwd_ms"] = f"error: {str(err).splitlines()[0][:60]}"
    print(json.dumps(result), flush=True)


def run_fla(name: str, out_path: str, warmup: int, rep: int) -> dict[str, object]:
    """Runs ``fla_child`` in a subprocess; a crash becomes "crash" in the missing fields."""
    env = dict(os.environ, FLA_DISABLE_BACKEND_DISPATCH="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--fla-child", name, out_path, "--warmup", str(warmup), "--rep", str(rep)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired:
        return {"fwd_ms": "timeout", "fwdbwd_ms": "timeout"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  fla {name}: exit {proc.returncode}: {tail[:160]}", flush=True)
    for key in ("fwd_ms", "fwdbwd_ms"):
        result.setdefault(key, "crash")
    return result


def fla_available() -> bool:
    try:
        import fla  # noqa: F401
    except Exception:  # noqa: BLE001 -- any import failure means "not available"
        return False
    return True


def rel_rms(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    return ((ref - got).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def reference_o(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """fp32 token-loop output on the same (bf16-rounded) inputs, for the accuracy columns."""
    from gdkvm.ops.gated_delta import naive_recurrent_gated_delta

    with torch.no_grad():
        x = {n: t.float() for n, t in inputs.items()}
        return naive_recurrent_gated_delta(x["q"], x["k"], x["v"], x["g"], x["beta"])[0]


def time_ours(name: str, inputs: dict[str, torch.Tensor], args: argparse.Namespace, precision: str) -> dict:
    """Our op in one precision mode ("high": fp32 intermediates, the default; "fast": bf16 intermediates)."""
    batch, length, heads = SHAPES[name][:3]
    previous = os.environ.get("GDKVM_TOKEN_PRECISION")
    os.environ["GDKVM_TOKEN_PRECISION"] = precision
    try:
        row: dict[str, object] = {"shape": name, "precision": precision}
        row["ours_fwd_ms"] = time_case(ours, inputs, "fwd", args.warmup, args.rep)
        row["ours_fwdbwd_ms"] = time_case(ours, inputs, "fwdbwd", args.warmup, args.rep)
        with torch.no_grad():
            row["o"] = ours(**inputs)[0]
    finally:
        if previous is None:
            os.environ.pop("GDKVM_TOKEN_PRECISION", None)
        else:
            os.environ["GDKVM_TOKEN_PRECISION"] = previous
    for mode in ("fwd", "fwdbwd"):
        row[f"ours_{mode}_ns_th"] = row[f"ours_{mode}_ms"] * 1e6 / (batch * length * heads)
    return row


def bench_shape(name: str, args: argparse.Namespace, with_fla: bool) -> list[dict[str, object]]:
    """Rows for one shape: ours in both precision modes, each against fla-core (if run) and the DESIGN.md anchors."""
    inputs = make_inputs(SHAPES[name])
    rows = [time_ours(name, inputs, args, precision) for precision in ("high", "fast")]
    o_ref = None if getattr(args, "no_accuracy", False) else reference_o(inputs)
    fla_res: dict[str, object] = {}
    o_fla = None
    if with_fla:
        with tempfile.TemporaryDirectory() as tmp:
            out_path = str(Path(tmp) / "o.pt")
            fla_res = run_fla(name, out_path, args.warmup, args.rep)
            if Path(out_path).exists():
                o_fla = torch.load(out_path).cuda()
    floors = floors_us(SHAPES[name])
    for row in rows:
        o = row.pop("o")
        row["floor_fwd_us"], row["floor_fwdbwd_us"] = floors
        if o_ref is not None:
            row["o_rel_rms_vs_fp32"] = rel_rms(o_ref, o)
        if o_fla is not None:
            row["o_rel_rms_fla_vs_fp32"] = None if o_ref is None else rel_rms(o_ref, o_fla)
        for mode in ("fwd", "fwdbwd"):
            theirs = fla_res.get(f"{mode}_ms")
            if theirs is not None:
                row[f"fla_{mode}_ms"] = theirs
            if isinstance(theirs, float):
                row[f"speedup_{mode}"] = theirs / row[f"ours_{mode}_ms"]
        if name in FLA_ANCHORS:
            for mode, anchor in zip(("fwd", "fwdbwd"), FLA_ANCHORS[name]):
                row[f"speedup_{mode}_vs_anchor"] = anchor / row[f"ours_{mode}_ms"]
        row["target"] = TARGETS.get(SHAPES[name][3])
    return rows


def fmt(x: object, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, float) else ("-" if x is None else str(x))


def print_table(rows: list[dict[str, object]]) -> None:
    head = ("shape", "prec", "ours fwd", "fla fwd", "x", "ours f+b", "fla f+b", "x", "x anchor f/fb", "ns/th fwd",
            "ns/th f+b", "floor f/fb us", "o err ours/fla")  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        cells = [
            str(r["shape"]), str(r["precision"]), fmt(r["ours_fwd_ms"]), fmt(r.get("fla_fwd_ms")),
            fmt(r.get("speedup_fwd"), ".2f"), fmt(r["ours_fwdbwd_ms"]), fmt(r.get("fla_fwdbwd_ms")),
            fmt(r.get("speedup_fwdbwd"), ".2f"),
            f"{fmt(r.get('speedup_fwd_vs_anchor'), '.2f')}/{fmt(r.get('speedup_fwdbwd_vs_anchor'), '.2f')}",
            fmt(r["ours_fwd_ns_th"], ".2f"), fmt(r["ours_fwdbwd_ns_th"], ".2f"),
            f"{r['floor_fwd_us']:.0f}/{r['floor_fwdbwd_us']:.0f}",
            f"{fmt(r.get('o_rel_rms_vs_fp32'), '.1e')}/{fmt(r.get('o_rel_rms_fla_vs_fp32'), '.1e')}",
        ]  # fmt: skip
        print(" | ".join(cells), flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--no-fla", action="store_true", help="skip fla-core even if it is installed")
    parser.add_argument("--warmup", type=int, default=25, help="do_bench warm-up (ms)")
    parser.add_argument("--rep", type=int, default=100, help="do_bench repetitions (ms)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the fp32 token-loop reference")


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    """Benchmarks every requested shape; returns one dict per shape (ms, ns per token-head, floors, speed-ups)."""
    if not torch.cuda.is_available():
        print("token rule: no CUDA device, nothing to time", flush=True)
        return []
    with_fla = not getattr(args, "no_fla", False) and fla_available()
    import triton

    print(f"token rule on {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"fla-core {'yes' if with_fla else 'not available'}", flush=True)  # fmt: skip
    rows = []
    for name in getattr(args, "shapes", list(SHAPES)):
        for row in bench_shape(name, args, with_fla):
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(rows)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--fla-child"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--fla-child", nargs=2)
        parser.add_argument("--warmup", type=int, default=25)
        parser.add_argument("--rep", type=int, default=100)
        child = parser.parse_args(argv)
        fla_child(child.fla_child[0], child.fla_child[1], child.warmup, child.rep)
        return []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
