"""Probe: why is our sequential chunk step slower than fla-core's? (issue 7)

fla-core's forward state kernel (``chunk_gated_delta_rule_fwd_h``) runs U = u - w S, S <- e^{G_C} S +
K^T (U * e^{G_C - G}) at about 0.8 us per chunk step on an H200 (docs/benchmarks.md, token rule, ninth round); a
one-product chain written the way our kernels are took 1.0-1.2 us. This probe runs fla's two-product step written in
our style, with one switch per difference between the two codes, next to fla's own kernel on the same inputs, so the
difference that costs the time shows up in one table:

- ACC: the second product accumulates into the decayed state (``tl.dot(kt, p, s)``) instead of ``s + tl.dot(kt, p)``;
- KT: k loaded transposed from memory ([K, BT], as fla) instead of ``tl.trans`` of the loaded [BT, K] tile;
- STORE: what is stored per chunk (0: nothing, 1: S and U in the operand dtype, as fla, 2: in fp32);
- the operand dtype (bf16 as fla, or fp32: TF32 products with fp32 w, u), value tile, warps and stages;
- KDEC: where the per-head decay goes: 0 the [BT, BV] tile (fla, our high mode), 1 the k tile in registers, which is
  then transposed (our fast mode's key-side decay, ``launch.key_decay``), 2 a k tile loaded transposed ([K, BT]),
  its columns scaled (``GDKVM_TOKEN_DECAY=keyt``);
- OURS: our own ``chunk_fwd._state_fwd_kernel`` in its split-output form (U and S only, as fla's kernel) on the same
  inputs, with each KDEC: tenth round, its 1.48 us per step in fast mode against this probe's 0.72.

Run on a CUDA machine from the repository root (fla-core optional)::

    python3 bench/step_probe.py
    TRITON_INTERPRET=1 python3 bench/step_probe.py --smoke   # CPU: every switch against a torch loop
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from probe_cli import probe_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gdkvm.ops.gated_delta.chunk_fwd import _state_fwd_kernel  # noqa: E402

SHAPES = {"B4T10240H8K64V64": (4, 10240, 8, 64, 64), "B4T2560H8K64V64": (4, 2560, 8, 64, 64)}


@triton.jit
def _step_kernel(
    k_ptr, w_ptr, u_ptr, gc_ptr, hs_ptr, un_ptr, ht_ptr, T, NT, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BV: tl.constexpr, ACC: tl.constexpr, KT: tl.constexpr, STORE: tl.constexpr,
    KDEC: tl.constexpr,
):  # fmt: skip
    """fla's forward state recurrence for one (value tile, batch*head), [B, T, H, *] layouts, per-head gate gc
    (chunk-local cumulative, fp32). hs_ptr [B, NT, H, K, V] and un_ptr [B, T, H, V] take S and U per chunk."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    dt = w_ptr.dtype.element_ty
    cols = tl.arange(0, K)
    cv = i_v * BV + tl.arange(0, BV)
    o_i = tl.arange(0, BT)
    p_s = cols[:, None] * V + cv[None, :]
    state = tl.zeros([K, BV], dtype=tl.float32)
    for i_t in range(NT):
        rows = i_t * BT + o_i
        mrow = rows < T
        th = (i_b.to(tl.int64) * T + rows) * H + i_h
        if STORE > 0:
            chunk = (i_b.to(tl.int64) * NT + i_t) * H + i_h
            st = state.to(dt) if STORE == 1 else state
            tl.store(hs_ptr + chunk * K * V + p_s, st.to(hs_ptr.dtype.element_ty))
        wt = tl.load(w_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None], other=0.0)
        ut = tl.load(u_ptr + th[:, None] * V + cv[None, :], mask=mrow[:, None], other=0.0).to(tl.float32)
        pseudo = ut - tl.dot(wt, state.to(dt))
        if STORE > 0:
            tl.store(un_ptr + th[:, None] * V + cv[None, :], pseudo.to(un_ptr.dtype.element_ty), mask=mrow[:, None])
        g_last = tl.load(gc_ptr + (i_b.to(tl.int64) * T + tl.minimum(i_t * BT + BT, T) - 1) * H + i_h)
        g = tl.load(gc_ptr + th, mask=mrow, other=0.0)
        decay = tl.where(mrow, tl.exp(g_last - g), 0.0)
        if KDEC == 2:
            k_cols = tl.load(k_ptr + th[None, :] * K + cols[:, None], mask=mrow[None, :], other=0.0).to(tl.float32)
            k_tr = (k_cols * decay[None, :]).to(dt)
            p = pseudo.to(dt)
        elif KDEC == 1:
            k_rows = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None], other=0.0).to(tl.float32)
            k_tr = tl.trans((k_rows * decay[:, None]).to(dt))
            p = pseudo.to(dt)
        else:
            p = (pseudo * decay[:, None]).to(dt)
            if KT:
                k_tr = tl.load(k_ptr + th[None, :] * K + cols[:, None], mask=mrow[None, :], other=0.0).to(dt)
            else:
                k_tr = tl.trans(tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None], other=0.0).to(dt))
        if ACC:
            state = tl.dot(k_tr, p, state * tl.exp(g_last))
        else:
            state = state * tl.exp(g_last) + tl.dot(k_tr, p)
    tl.store(ht_ptr + i_bh.to(tl.int64) * K * V + p_s, state)


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    batch, length, heads, key_dim, value_dim = shape
    gen = torch.Generator(device=device).manual_seed(0)
    k = F.normalize(torch.randn(batch, length, heads, key_dim, device=device, generator=gen), dim=-1)
    w = 0.5 * F.normalize(torch.randn(batch, length, heads, key_dim, device=device, generator=gen), dim=-1)
    u = torch.randn(batch, length, heads, value_dim, device=device, generator=gen)
    g = F.logsigmoid(torch.randn(batch, length, heads, device=device, generator=gen)) * 0.1
    nt = triton.cdiv(length, 64)
    pad = nt * 64 - length
    gc = F.pad(g, (0, 0, 0, pad)).view(batch, nt, 64, heads).cumsum(2).view(batch, nt * 64, heads)[:, :length]
    return {"k": k.to(dtype), "w": w.to(dtype), "u": u.to(dtype), "gc": gc.contiguous()}


def run_step(
    x: dict[str, torch.Tensor], bv: int, warps: int, stages: int, acc: bool, kt: bool, store: int, kdec: int = 0
) -> torch.Tensor:
    batch, length, heads, key_dim = x["k"].shape
    value_dim = x["u"].shape[-1]
    nt = triton.cdiv(length, 64)
    sdt = x["w"].dtype if store == 1 else torch.float32
    hs = torch.empty(batch, nt, heads, key_dim, value_dim, device=x["k"].device, dtype=sdt)
    un = torch.empty(batch, length, heads, value_dim, device=x["k"].device, dtype=sdt)
    ht = torch.empty(batch * heads, key_dim, value_dim, device=x["k"].device)
    _step_kernel[(triton.cdiv(value_dim, bv), batch * heads)](
        x["k"], x["w"], x["u"], x["gc"], hs, un, ht, length, nt, heads, key_dim, value_dim, BT=64, BV=bv, ACC=acc,
        KT=kt, STORE=store, KDEC=kdec, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return ht


def run_ours(x: dict[str, torch.Tensor], bv: int, warps: int, stages: int, kdec: int) -> torch.Tensor:
    """Our forward state pass as ``GDKVM_TOKEN_O=split`` launches it (saving S and U, no o, one segment): final state
    [B*H, K, V]. q, A and o are never touched without EMIT_O (k, w and u stand in for them)."""
    k, w, u, gc = x["k"], x["w"], x["u"], x["gc"]
    batch, length, heads, key_dim = k.shape
    value_dim, nt = u.shape[-1], triton.cdiv(length, 64)
    hs = torch.empty(batch, nt, heads, key_dim, value_dim, device=k.device, dtype=w.dtype)
    us = torch.empty_like(u)
    ht = torch.empty(batch * heads, key_dim, value_dim, device=k.device)
    _state_fwd_kernel[(triton.cdiv(value_dim, bv), batch * heads)](
        k, k, gc, w, u, w, u, ht, u, ht, hs, us, 1.0, length, heads, key_dim, value_dim, nt, 1, nt, 0,
        PER_CHANNEL=False, HAS_H0=False, STORE_HT=True, SAVE=True, EMIT_O=False, FOLD=False, SEG=False, SPLIT16=False,
        KEY_DECAY=kdec, BT=64, BK=key_dim, BV=bv, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return ht


def reference(x: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same recurrence in torch (fp32), final state [B*H, K, V]."""
    k, w, u, gc = (x[n].float() for n in ("k", "w", "u", "gc"))
    batch, length, heads, key_dim = k.shape
    state = torch.zeros(batch, heads, key_dim, u.shape[-1], device=k.device)
    for t0 in range(0, length, 64):
        sl = slice(t0, min(t0 + 64, length))
        kc, wc, uc, gcc = (y[:, sl].transpose(1, 2) for y in (k, w, u, gc))  # [B, H, C, *]
        pseudo = uc - wc @ state
        g_last = gcc[..., -1:]
        decayed = pseudo * (g_last - gcc).exp().unsqueeze(-1)
        state = state * g_last.exp().unsqueeze(-1) + kc.transpose(-1, -2) @ decayed
    return state.reshape(batch * heads, key_dim, -1)


def smoke() -> None:
    x = make_inputs((1, 150, 2, 16, 16), torch.float32, "cpu")
    ref = reference(x)
    for acc, kt, store in itertools.product((False, True), (False, True), (0, 1, 2)):
        torch.testing.assert_close(run_step(x, 16, 4, 1, acc, kt, store), ref, rtol=1e-4, atol=1e-4)
    for kdec in (0, 1, 2):
        torch.testing.assert_close(run_step(x, 16, 4, 1, True, True, 1, kdec), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(run_ours(x, 16, 4, 1, kdec), ref, rtol=1e-4, atol=1e-4)
    print("step probe smoke: ok")


def fla_step(x: dict[str, torch.Tensor]):
    """fla-core's own forward state kernel on the same inputs (None without fla-core)."""
    try:
        from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
    except ImportError:
        return None
    return lambda: chunk_gated_delta_rule_fwd_h(x["k"], x["w"], x["u"], g=x["gc"], output_final_state=True)


def main(argv: list[str] | None = None) -> None:
    args = probe_args(__doc__, list(SHAPES), "step_probe.py", argv)
    if args.smoke:
        return smoke()
    bench = lambda fn: float(triton.testing.do_bench_cudagraph(fn, rep=50, return_mode="median"))  # noqa: E731
    print(
        "| shape | dtype | kernel | BV | warps | stages | ACC | KT | STORE | KDEC | ms | us per step | final state ok |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.shapes:
        nt = triton.cdiv(SHAPES[name][1], 64)
        for dtype in (torch.bfloat16, torch.float32):
            x = make_inputs(SHAPES[name], dtype, "cuda")
            ref = reference(x)
            fla = fla_step(x) if dtype == torch.bfloat16 else None
            if fla is not None:
                ms = bench(fla)
                print(f"| {name} | bf16 | fla-core (autotuned) | | | | | | | | {ms:.4f} | {ms * 1e3 / nt:.2f} | |")
            base = [(16, 4, 2, False, False, 1, 0)]
            grid = itertools.product((16, 32, 64), (2, 4), (2, 3))
            sweep = [(bv, warps, st, True, True, 1, 0) for bv, warps, st in grid]
            flips = [(16, 4, 2, True, False, 1, 0), (16, 4, 2, False, True, 1, 0),
                     (16, 4, 2, True, True, 0, 0), (16, 4, 2, True, True, 2, 0),
                     (16, 4, 3, False, False, 1, 0), (16, 4, 3, True, True, 1, 1), (16, 4, 3, True, True, 1, 2),
                     (16, 4, 2, True, True, 1, 1), (16, 4, 2, True, True, 1, 2)]  # fmt: skip
            ours = [(16, 4, st, None, None, None, kdec) for st in (2, 3) for kdec in (0, 1, 2)] + [
                (16, 2, 3, None, None, None, 0)]  # fmt: skip
            for bv, warps, stages, acc, kt, store, kdec in base + flips + ours + sweep:
                if acc is None:
                    fn = lambda: run_ours(x, bv, warps, stages, kdec)  # noqa: E731, B023
                else:
                    fn = lambda: run_step(x, bv, warps, stages, acc, kt, store, kdec)  # noqa: E731, B023
                kind = "ours" if acc is None else "probe"
                flags = "| | |" if acc is None else f"{acc} | {kt} | {store} |"
                head = f"| {name} | {str(dtype)[6:]} | {kind} | {bv} | {warps} | {stages} | {flags} {kdec} |"
                try:
                    ok = bool(torch.allclose(fn(), ref, rtol=5e-2, atol=5e-2))
                    ms = bench(fn)
                except Exception as err:  # noqa: BLE001 - a config that does not fit is a row, not a stop
                    print(f"{head} failed: {str(err).splitlines()[0][:60]} | | |", flush=True)
                    continue
                print(f"{head} {ms:.4f} | {ms * 1e3 / nt:.2f} | {ok} |", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
