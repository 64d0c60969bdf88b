"""``bench/ops_token.py --check``: every launch of the token-rule kernels alone, synchronised, against the float64
torch chunk reference, one subprocess per case (so a kernel fault names its case and launch and poisons nothing else).

    python3 bench/ops_token.py --check                              # GPU: all cases, both precisions
    TRITON_INTERPRET=1 python3 bench/ops_token_check.py --check-child tiny-cpu high   # CPU self-test of this script
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ops_token import child_env, rel_rms  # noqa: E402

from tests.ops.test_chunk_gpu import make_inputs  # noqa: E402  (the GPU tests' inputs, also on the CPU)

# --check: every launch alone against the float64 torch chunk reference (gdkvm.ops.gated_delta.naive
# .chunk_reference_intermediates), one subprocess per case so that a kernel fault (illegal address) is reported for
# its case and launch and does not poison the others. Cases: the GPU tests' and the first benchmark shape.
CHECK_CASES = {  # name: (B, T, H, K, V, per_channel, with_h0, dtype, gate_scale, zero_gate_p)
    "B2T1000H4K64V64-h0": (2, 1000, 4, 64, 64, False, True, "bfloat16", 1.0, 0.0),
    "B2T1500H4K128V128-zerogate": (2, 1500, 4, 128, 128, False, False, "bfloat16", 1.0, 0.5),
    "B1T2000H2K64V32-slowgate": (1, 2000, 2, 64, 32, False, True, "bfloat16", 0.1, 0.0),
    "B1T300H2K256V96-h0": (1, 300, 2, 256, 96, False, True, "bfloat16", 1.0, 0.0),
    "B2T500H3K100V60-chan": (2, 500, 3, 100, 60, True, False, "bfloat16", 1.0, 0.0),
    "B1T300H2K64V48-chan-strong": (1, 300, 2, 64, 48, True, True, "bfloat16", 10.0, 0.0),
    "B1T700H2K64V64-fp32-h0": (1, 700, 2, 64, 64, False, True, "float32", 1.0, 0.0),
    "B4T2560H8K64V64": (4, 2560, 8, 64, 64, False, False, "bfloat16", 1.0, 0.0),
    "tiny-cpu": (1, 150, 2, 32, 24, False, True, "float32", 1.0, 0.0),  # for the interpreter (CPU self-test)
}
CHECK_TOL = {"high": 1e-2, "fast": 3e-2}  # per intermediate (relative RMS); the tests' bounds are on o/grads only


def block_errors(ref: torch.Tensor, got: torch.Tensor, chunk: int) -> str:
    """Relative RMS per 16-row block of a chunk ([B, T, H, ...] tensors), then for the first / last chunk."""
    batch, length = ref.shape[:2]
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    diff = (got.double() - ref.double()).reshape(batch, length, -1)
    refd = ref.double().reshape(batch, length, -1)
    diff = F.pad(diff, (0, 0, 0, pad)).reshape(batch, n_chunks, chunk, -1)
    refd = F.pad(refd, (0, 0, 0, pad)).reshape(batch, n_chunks, chunk, -1)
    nb = max(1, chunk // 16)

    def rel(d: torch.Tensor, r: torch.Tensor) -> float:
        return (d.pow(2).mean().sqrt() / r.pow(2).mean().sqrt().clamp_min(1e-30)).item()

    rows = [rel(diff[:, :, b * 16 : (b + 1) * 16], refd[:, :, b * 16 : (b + 1) * 16]) for b in range(nb)]
    per_chunk = [rel(diff[:, c], refd[:, c]) for c in range(n_chunks)]
    worst = max(range(n_chunks), key=lambda c: per_chunk[c])
    return (
        f"rows/16 [{' '.join(f'{e:.1e}' for e in rows)}] chunk0 {per_chunk[0]:.1e} last {per_chunk[-1]:.1e} "
        f"worst chunk {worst}/{n_chunks} {per_chunk[worst]:.1e}"
    )


def state_errors(ref: torch.Tensor, got: torch.Tensor) -> str:
    """Relative RMS of per-chunk states [B, NT, H, K, V] at the first, middle and last chunk and the worst one."""
    d = (got.double() - ref.double()).transpose(0, 1).flatten(1)
    r = ref.double().transpose(0, 1).flatten(1)
    per = (d.pow(2).mean(1).sqrt() / r.pow(2).mean(1).sqrt().clamp_min(1e-30)).tolist()
    worst = max(range(len(per)), key=lambda c: per[c])
    mid = per[len(per) // 2]
    return f"chunk0 {per[0]:.1e} mid {mid:.1e} last {per[-1]:.1e} worst {worst}/{len(per)} {per[worst]:.1e}"


def check_child(name: str, precision: str) -> None:
    """Subprocess body of --check: one case, each launch synchronised and compared, then the autograd path."""
    import time

    os.environ["GDKVM_TOKEN_PRECISION"] = precision
    from gdkvm.ops.gated_delta import chunk_gated_delta, naive_recurrent_gated_delta
    from gdkvm.ops.gated_delta.chunk import default_chunk_size
    from gdkvm.ops.gated_delta.chunk_bwd import launch_chunk_bwd, launch_state_bwd
    from gdkvm.ops.gated_delta.chunk_fwd import launch_prep, launch_state_fwd
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
    from gdkvm.ops.gated_delta.launch import autotuning, heuristic
    from gdkvm.ops.gated_delta.naive import chunk_reference_intermediates

    batch, length, heads, key_dim, value_dim, per_channel, with_h0, dtype, gate_scale, zero_p = CHECK_CASES[name]
    dtype = getattr(torch, dtype)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    inputs = make_inputs(batch, length, heads, key_dim, value_dim, per_channel=per_channel, dtype=dtype,
                         gate_scale=gate_scale, zero_gate_p=zero_p, dev=dev)  # fmt: skip
    q, k, v, g, beta = (inputs[name] for name in ("q", "k", "v", "g", "beta"))
    h0 = torch.randn(batch, heads, key_dim, value_dim, device=dev) if with_h0 else None
    do = torch.randn(batch, length, heads, value_dim, device=dev).to(dtype)
    dht = torch.randn(batch, heads, key_dim, value_dim, device=dev)
    scale, chunk = key_dim**-0.5, default_chunk_size(key_dim, dtype)
    tol = CHECK_TOL[precision]
    narrow = precision == "fast" and dtype != torch.float32
    kinds = ("prep", "state", "state_bwd", "chunk_bwd")
    configs = {kind: heuristic(kind, key_dim, value_dim, batch * heads, narrow) for kind in kinds}
    print(f"case {name} precision {precision} chunk {chunk} autotune {autotuning()} configs {configs}", flush=True)
    ref = chunk_reference_intermediates(
        q, k, v, g, beta, scale=scale, initial_state=h0, chunk_size=chunk, do=do, dht=dht
    )  # fmt: skip
    bad: list[str] = []

    def launch(label: str, fn):
        print(f"  launch {label} ...", end="", flush=True)
        start = time.perf_counter()
        out = fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        print(f" ok ({(time.perf_counter() - start) * 1e3:.1f} ms incl. compile)", flush=True)
        return out

    def compare(stage: str, got: torch.Tensor, want: torch.Tensor, detail: str = "rows") -> None:
        finite = bool(torch.isfinite(got.float()).all())
        err = rel_rms(want, got) if finite else float("inf")
        verdict = "ok" if err < tol else "BAD"
        if verdict == "BAD":
            bad.append(stage)
        extra = ""
        if finite and detail == "rows":
            extra = block_errors(want, got, chunk)
        elif finite and detail == "states":
            extra = state_errors(want, got)
        print(f"    {verdict:3s} {stage:12s} rel_rms {err:.2e} {'' if finite else 'NON-FINITE '}{extra}", flush=True)

    gc = chunk_local_cumsum(g, chunk)
    prep = launch("1 prep", lambda: launch_prep(q, k, v, gc, beta, scale, chunk))
    for stage in ("t_inv", "a", "w", "u"):
        compare(stage, prep[stage], ref[stage])
    fwd = launch("2 state_fwd", lambda: launch_state_fwd(q, k, gc, prep, value_dim, scale, h0, True, True, chunk))
    compare("states", fwd["states"], ref["states"], "states")
    compare("pseudo(U)", fwd["pseudo"], ref["pseudo"])
    compare("o", fwd["o"], ref["o"])
    compare("final_state", fwd["final_state"], ref["final_state"], "none")
    saved = {**prep, **fwd}
    sgrads = launch(
        "3 state_bwd", lambda: launch_state_bwd(q, k, gc, saved, value_dim, scale, do, dht, with_h0, chunk)
    )  # fmt: skip
    compare("dstates", sgrads["dstates"], ref["dstates"], "states")
    compare("dpseudo(dU)", sgrads["dpseudo"], ref["dpseudo"])
    if with_h0:
        compare("dh0", sgrads["dh0"], ref["dh0"], "none")
    grads = launch("4 chunk_bwd", lambda: launch_chunk_bwd(saved, sgrads, q, k, v, gc, beta, scale, do, chunk))
    # Reference gradients: autograd through the fp32 token loop on the same rounded inputs (as the GPU tests).
    leaves = {n: t.float().clone().requires_grad_() for n, t in dict(q=q, k=k, v=v, g=g, beta=beta).items()}
    o_ref, s_ref = naive_recurrent_gated_delta(
        **leaves, scale=scale, initial_state=h0, output_final_state=True
    )  # fmt: skip
    ((o_ref * do.float()).sum() + (s_ref * dht).sum()).backward()
    for label, got in zip(("dq", "dk", "dv", "dg", "dbeta"), grads):
        compare(label, got, leaves[label[1:]].grad, "rows" if label != "dg" or not per_channel else "none")
    # End to end through the autograd function (what the tests call).
    xs = {n: t.clone().requires_grad_() for n, t in dict(q=q, k=k, v=v, g=g, beta=beta).items()}
    o, s = launch(
        "5 autograd fwd", lambda: chunk_gated_delta(**xs, initial_state=h0, output_final_state=True, backend="triton")
    )
    launch("6 autograd bwd", lambda: ((o.float() * do.float()).sum() + (s * dht).sum()).backward())
    errs = {"o": rel_rms(o_ref, o), "state": rel_rms(s_ref, s)}
    errs |= {f"d{n}": rel_rms(leaves[n].grad, xs[n].grad) for n in xs}
    ok = errs["o"] < 5e-3 and errs["state"] < 5e-3 and all(e < 1e-2 for n, e in errs.items() if n.startswith("d"))
    print(f"    e2e {'ok' if ok else 'BAD'} {json.dumps({n: float(f'{e:.2e}') for n, e in errs.items()})}", flush=True)
    print(f"RESULT {name} {precision}: " + (f"FIRST BAD STAGE {bad[0]} (all bad: {bad})" if bad else "all launches ok"))


def run_check(args: argparse.Namespace) -> int:
    """--check: each case (and precision) in its own subprocess with CUDA_LAUNCH_BLOCKING=1; prints every line."""
    failures = 0
    for name in args.check_cases:
        for precision in args.check_precisions:
            env = child_env(CUDA_LAUNCH_BLOCKING="1")
            if not args.check_autotune:
                env["GDKVM_AUTOTUNE"] = "0"
            cmd = [sys.executable, __file__, "--check-child", name, precision]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.check_timeout)
            except subprocess.TimeoutExpired as err:
                print(f"{name} {precision}: TIMEOUT after {args.check_timeout} s\n{err.stdout or ''}", flush=True)
                failures += 1
                continue
            print(proc.stdout.rstrip(), flush=True)
            if proc.returncode != 0:
                failures += 1
                tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
                print(f"RESULT {name} {precision}: CRASH (exit {proc.returncode}); stderr tail:\n{tail}", flush=True)
            elif "FIRST BAD" in proc.stdout or "e2e BAD" in proc.stdout:
                failures += 1
    print(f"check: {failures} case(s) with problems", flush=True)
    return failures


if __name__ == "__main__":
    if sys.argv[1:2] != ["--check-child"] or len(sys.argv) != 4:
        raise SystemExit("usage: ops_token_check.py --check-child CASE high|fast (or run bench/ops_token.py --check)")
    check_child(sys.argv[2], sys.argv[3])
