"""Probe for a token-rule forward whose sequential pass is one product per chunk (issue 7).

Over one chunk the state map is affine, ``S' = M S + b`` with ``M = diag(e^{G_C}) - (K * e^{G_C - G})^T w`` [K, K]
and ``b = (K * e^{G_C - G})^T u`` [K, V]; both depend on the chunk alone, so a parallel prep could form them with two
products, leaving the sequential pass one [K, K] x [K, BV] product per chunk (today's pass runs four: w S, K^T U and
o's Q S and A U). This probe times that pass alone on random contractive M (no gdkvm code involved), for the value
tiles, warps and stages it could use, so that the design can be judged before it is built. (A twin with K and V as
compile-time constants, timed on 2026-11-29 at e038df6, was no faster and is gone.)

Run on a CUDA machine from the repository root::

    python3 bench/chain_probe.py                  # all shapes of bench/ops_token.py
    TRITON_INTERPRET=1 python3 bench/chain_probe.py --smoke   # CPU: the kernel against a torch loop

Prints one row per (shape, configuration): ms per pass (CUDA graph), us per chunk step and the bytes read per step.
"""

from __future__ import annotations

import functools
import itertools

import torch
import triton
import triton.language as tl
from probe_cli import probe_args

SHAPES = {  # name: (B, T, H, K, V), as bench/ops_token.py
    "B4T2560H8K64V64": (4, 2560, 8, 64, 64),
    "B4T10240H8K64V64": (4, 10240, 8, 64, 64),
    "B1T25600H8K64V32": (1, 25600, 8, 64, 32),
    "B4T2560H8K128V128": (4, 2560, 8, 128, 128),
    "B8T4096H16K128V128": (8, 4096, 16, 128, 128),
}


@triton.jit
def _chain_kernel(
    m_ptr, b_ptr, s_ptr, ht_ptr, K, V, NT,
    BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, STORE: tl.constexpr, NARROW: tl.constexpr,
):  # fmt: skip
    """One (value tile, batch*head): S = 0, then per chunk c store S (STORE) and S <- M_c S + b_c.
    m_ptr [BH, NT, K, K], b_ptr and s_ptr [BH, NT, K, V], ht_ptr [BH, K, V]; fp32 state, M in its buffer's dtype
    (NARROW: 16-bit M, the state cast to it for the product)."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    rows = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mrow = rows < K
    m_s = mrow[:, None] & (cv < V)[None, :]
    p_s = rows[:, None] * V + cv[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float32)
    for c in range(NT):
        base = i_bh.to(tl.int64) * NT + c
        if STORE:
            tl.store(s_ptr + base * K * V + p_s, state, mask=m_s)
        m = tl.load(m_ptr + base * K * K + rows[:, None] * K + rows[None, :], mask=mrow[:, None] & mrow[None, :],
                    other=0.0)  # fmt: skip
        b = tl.load(b_ptr + base * K * V + p_s, mask=m_s, other=0.0)
        if NARROW:
            state = tl.dot(m, state.to(m.dtype)) + b
        else:
            state = tl.dot(m, state, input_precision=PREC) + b
    tl.store(ht_ptr + i_bh.to(tl.int64) * K * V + p_s, state, mask=m_s)


def make_chain(bh: int, nt: int, k: int, v: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    """Contractive random chunk maps: M = 0.9 (I - P) with P a random projection-like matrix; b random."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(bh, nt, k, k // 4, device=device, generator=gen)
    q, _ = torch.linalg.qr(x)
    m = 0.9 * (torch.eye(k, device=device) - q @ q.transpose(-1, -2))
    b = torch.randn(bh, nt, k, v, device=device, generator=gen) * 0.1
    return m.to(dtype).contiguous(), b.contiguous()


def run_chain(m, b, bv: int, warps: int, stages: int, store: bool, prec: str) -> tuple[torch.Tensor, torch.Tensor]:
    bh, nt, k, v = b.shape
    states = torch.empty_like(b)
    final = torch.empty(bh, k, v, device=b.device)
    _chain_kernel[(triton.cdiv(v, bv), bh)](
        m, b, states, final, k, v, nt, BK=max(16, triton.next_power_of_2(k)), BV=bv, PREC=prec, STORE=store,
        NARROW=m.dtype != torch.float32, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return states, final


def smoke() -> None:
    m, b = make_chain(2, 5, 24, 20, torch.float32, "cpu")
    states, final = run_chain(m, b, 16, 4, 1, True, "ieee")
    s = torch.zeros(2, 24, 20)
    for c in range(5):
        torch.testing.assert_close(states[:, c], s, rtol=1e-5, atol=1e-5)
        s = m[:, c] @ s + b[:, c]
    torch.testing.assert_close(final, s, rtol=1e-5, atol=1e-5)
    print("chain probe smoke: ok")


def main(argv: list[str] | None = None) -> None:
    args = probe_args(__doc__, list(SHAPES), "chain_probe.py", argv)
    if args.smoke:
        return smoke()
    print("| shape | M dtype | BV | warps | stages | store S | ms | us per chunk | KB read per step | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.shapes:
        batch, length, heads, k, v = SHAPES[name]
        nt = triton.cdiv(length, 64)
        bh = batch * heads
        for dtype in (torch.float32, torch.bfloat16):
            m, b = make_chain(bh, nt, k, v, dtype, "cuda")
            ref = None
            configs = [(bv, 4, st, True) for bv, st in itertools.product((16, 32, 64), (1, 2, 3))]
            for bv, warps, stages, store in [*configs, (16, 2, 3, True), (32, 2, 3, True), (16, 4, 2, False)]:
                if bv > v:
                    continue
                try:
                    fn = functools.partial(run_chain, m, b, bv, warps, stages, store, "tf32")
                    _, final = fn()
                    ref = final if ref is None else ref
                    ok = torch.allclose(final, ref, rtol=2e-2, atol=2e-2) and bool(final.isfinite().all())
                    ms = float(triton.testing.do_bench_cudagraph(fn, rep=50, return_mode="median"))
                except Exception as err:  # noqa: BLE001 - a config that does not fit is a row, not a stop
                    print(f"| {name} | {str(dtype)[6:]} | {bv} | {warps} | {stages} | {store} | failed: "
                          f"{str(err).splitlines()[0][:80]} | | | |", flush=True)  # fmt: skip
                    continue
                read_kb = (k * k * m.element_size() + k * bv * 4) / 1024
                print(f"| {name} | {str(dtype)[6:]} | {bv} | {warps} | {stages} | {store} | {ms:.4f} | "
                      f"{ms * 1e3 / nt:.2f} | {read_kb:.0f} | {ok} |", flush=True)  # fmt: skip
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
