"""The frame rule's forward in ONE launch: Gram tasks, value-slice walkers and readout tasks side by side.

The three-launch forward (``triton_fwd.frame_fwd``) runs the Gram pre-pass, then the serial recurrence, then the
readout; at T10 the pre-pass and the readout are about half its GPU time, while the recurrence, latency-bound, leaves
most of the GPU idle. Here one grid holds both kinds of programs:

- walkers, one per (batch element, value slice), run ``walk_slice`` over all frames exactly as
  ``fwd_parallel_kernel`` does, but before frame t they wait until the Gram tasks of frame t are counted in
  ``flags[b, t, 0]``, and after storing their slice of S_t they count it into ``flags[b, t, 1]``;
- workers take tasks in a fixed global order, round robin: first every Gram task (frame by frame: K_t^T V_t column
  groups with their gate projections, and K_t^T K_t), then every readout tile (frame by frame), each readout
  waiting until all slices of its state are counted.

A task only ever waits for tasks earlier in that order or for walkers, and walkers only for Gram tasks, so with every
program resident at once nothing waits forever: the launch is cooperative (CUDA guarantees residency or refuses the
launch, and then the three-launch forward runs). Under the interpreter, which runs programs one by one, the same
kernel runs in three phased launches (Gram tasks, walkers, readouts: ``TUNING["fused_fwd"] = 2``), where every wait
is already satisfied; that is how the CPU tests check it. Counters are int32 in a zeroed ``flags [B, T, 2]``;
cross-program data is read through L2 (``.cg``), signals release and waits acquire at GPU scope.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, interpreting
from gdkvm.ops.frame.tiles import signal_count, wait_count
from gdkvm.ops.frame.triton_fwd import frame_fwd, readout_tile, walk_slice
from gdkvm.ops.frame.triton_gram import gram_layout, gram_task
from gdkvm.ops.frame.tuning import (
    TUNING,
    dot_precision,
    fast_layout,
    fit,
    launch,
    launch_cooperative,
    pad_k,
    safe_warps,
    serial_fast_precision,
    sm_count,
)


@triton.jit(
    do_not_specialize=["B", "T", "N", "H", "HD", "NCOL", "CW", "NS", "NR", "NW", "N_GRAM", "N_READ", "SLOTS", "RCOLS"]
)
def fwd_fused_kernel(
    k_ptr, v_ptr, kk_ptr, kv_ptr, r_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, o_ptr, flag_ptr,
    B, T, N, DK, DV, H, HD, NCOL, CW, NS, NR, NW, N_GRAM, N_READ, SLOTS, RCOLS,
    SYNC: tl.constexpr, LOOKAHEAD: tl.constexpr, HAS_H0: tl.constexpr, IN_PLACE: tl.constexpr, WITH_R: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, BN: tl.constexpr, BY: tl.constexpr, BNO: tl.constexpr,
    BVO: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr, PSUM_DOT: tl.constexpr,
):  # fmt: skip
    """Grid: (NR + NW,). Programs pid < NR (NR = B * NS, or 0 in a phased launch without walkers) are walkers:
    batch element pid // NS, value slice pid % NS (BV columns). The others are workers w = pid - NR, taking tasks
    w, w + NW, ... of N_GRAM Gram tasks (index (t * B + b) * (NCOL + 1) + c: ``gram_task`` column group c, or K^T K
    for c = NCOL) followed by N_READ readout tiles (index (t * B + b) * tiles + tile; BNO rows x RCOLS columns, BVO
    at a time).

    k [B,T,N,DK], v [B,T,N,DV] (input dtype); kk [B,T,DK,DK], kv [B,T,DK,DV], r [B,T,DK,2,BH*BH], h0 [B,DK,DV],
    states [B,SLOTS,DK,DV] (fp32; with IN_PLACE the states are kv itself); o [B,T,N,DV]; flag int32 [B,T,2] zeros.
    SYNC: 1 readouts of frame t wait for S_t; 2 for the last frame (walkers count once, at the end); 0 no waits
    (phased launches only).
    """
    pid = tl.program_id(0)
    GT = NCOL + 1
    if pid < NR:
        walk_slice(
            kk_ptr, kv_ptr, r_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, flag_ptr,
            (pid // NS).to(tl.int64), (pid % NS) * BV, T, DK, DV, H, HD, GT,
            HAS_H0, IN_PLACE, BK, BV, BH, SPREC, PSUM_DOT, SYNC, LOOKAHEAD,
        )  # fmt: skip
    else:
        n_vo = tl.cdiv(DV, RCOLS)
        tiles = tl.cdiv(N, BNO) * n_vo
        for i in tl.range(pid - NR, N_GRAM + N_READ, NW, num_stages=1):  # no load may move above a wait
            if i < N_GRAM:
                frame = i // GT  # t * B + b
                bt = ((frame % B) * T + frame // B).to(tl.int64)
                gram_task(
                    k_ptr, v_ptr, kv_ptr, kk_ptr, wb_ptr, wa_ptr, r_ptr, bt, i % GT,
                    N, DK, DV, H, HD, NCOL, CW, True, WITH_R, BK, BN, BY, BH, PREC, SPREC, kk_ptr, 0, False, 16, 0,
                )  # fmt: skip
                if SYNC:
                    signal_count(flag_ptr + bt * 2)
            else:
                j = i - N_GRAM
                frame = j // tiles
                b = frame % B
                t = frame // B
                if SYNC == 1:
                    wait_count(flag_ptr + (b * T + t) * 2 + 1, NS)
                elif SYNC == 2:
                    wait_count(flag_ptr + (b * T + T - 1) * 2 + 1, NS)
                tile = j % tiles
                readout_tile(
                    k_ptr, states_ptr, o_ptr, (b * T + t).to(tl.int64), (tile // n_vo) * BNO, (tile % n_vo) * RCOLS,
                    RCOLS, T, N, DK, DV, SLOTS, BK, BNO, BVO, PREC, True, flag_ptr, NS, False,
                )  # fmt: skip


def _mode(device: torch.device) -> int:
    """0: three-launch forward; 1: one cooperative launch; 2: phased launches of the fused kernel; 3: one launch
    forced (compile checks only: the interpreter would wait forever)."""
    mode = int(TUNING["fused_fwd"])
    if mode == 1 and (device.type != "cuda" or interpreting()):
        return 0
    return mode


def fused_frame_fwd(
    k: torch.Tensor,
    v: torch.Tensor,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    heads: int,
    initial_state: torch.Tensor | None,
    save: bool,
    fast: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None:
    """The forward in one launch (module docstring), where ``TUNING["fused_fwd"]`` allows it and CUDA can make the
    whole grid resident; None, having launched nothing, otherwise. Arguments and results as ``frame_fwd``'s
    (``fast`` = its ``fast_layout``: (BH, BV))."""
    mode = _mode(k.device)
    if mode == 0:
        return None
    b, t, n, dk = k.shape
    dv = v.shape[-1]
    bh, bv = fast
    ns = dv // bv
    if mode == 1 and pad_k(dk) > int(TUNING["fused_max_bk"]):
        return None
    if mode == 1 and not TUNING["fused_capture"] and torch.cuda.is_current_stream_capturing():
        return None  # a cooperative launch inside CUDA graph capture: not relied on unless asked for
    if mode in (1, 3):
        nw = int(TUNING["fused_per_sm"]) * (sm_count(k.device.index or 0) if k.is_cuda else 132) - b * ns
        if nw < int(TUNING["fused_min_workers"]):
            return None
    f32 = {"device": k.device, "dtype": torch.float32}
    kv = torch.empty(b, t, dk, dv, **f32)
    kk = torch.empty(b, t, dk, dk, **f32)
    r = torch.empty(b, t, dk, 2, bh * bh, **f32)
    states = torch.empty(b, t + 1, dk, dv, **f32) if save else kv
    o = torch.empty_like(v)
    flags = torch.zeros(b, t, 2, device=k.device, dtype=torch.int32)
    w_beta, w_alpha, a_log, dt_bias = params
    h0 = initial_state if initial_state is not None else states
    cw, ncol, gconst = gram_layout(dk, dv, heads, bh, True, k.dtype, k.device, True)
    bk = pad_k(dk)
    bno = bvo = fit(int(TUNING["readout_tile"]), bk)
    rcols = max(bvo, min(dv, int(TUNING["fused_read_cols"])) // bvo * bvo)
    n_gram, n_read = b * t * (ncol + 1), b * t * cdiv(n, bno) * cdiv(dv, rcols)
    args = (k, v, kk, kv, r, h0, w_beta, w_alpha, a_log, dt_bias, states, o, flags)
    sizes = (b, t, n, dk, dv, heads, dv // heads, ncol, cw, ns)
    const = {
        "HAS_H0": initial_state is not None, "IN_PLACE": not save, "WITH_R": True, "BK": bk, "BV": bv, "BH": bh,
        "BN": gconst["BN"], "BY": gconst["BY"], "BNO": bno, "BVO": bvo, "PREC": dot_precision(k.dtype, k.device),
        "SPREC": serial_fast_precision(k.device), "PSUM_DOT": bool(TUNING["fast_psum_dot"]),
        "LOOKAHEAD": int(TUNING["fused_lookahead"]),
        "num_warps": safe_warps(int(TUNING["fast_warps"]), bk, min(bv, bh * bh, gconst["BY"])),
        "num_stages": int(TUNING["gram_stages"]),
    }  # fmt: skip
    slots = states.shape[1]
    if mode == 2:
        workers = sm_count(k.device.index or 0) if k.is_cuda else 3
        for nr, nw, tasks in ((0, workers, (n_gram, 0)), (b * ns, 0, (0, 0)), (0, workers, (0, n_read))):
            launch(fwd_fused_kernel, (nr + nw,), *args, *sizes, nr, nw, *tasks, slots, rcols, SYNC=0, **const)
        return o, states, (kk if save else None), (kv if save else None)
    if not launch_cooperative(
        fwd_fused_kernel, (b * ns + nw,), *args, *sizes, b * ns, nw, n_gram, n_read, slots, rcols,
        SYNC=int(TUNING["fused_sync"]), **const,
    ):  # fmt: skip
        return None
    return o, states, (kk if save else None), (kv if save else None)


def frame_forward(
    k: torch.Tensor,
    v: torch.Tensor,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    heads: int,
    initial_state: torch.Tensor | None,
    save: bool = True,
    want_final: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The Triton forward: in one launch where it applies (``fused_frame_fwd``), else ``frame_fwd``'s three.
    Arguments and results as ``frame_fwd``'s (params = w_beta, w_alpha, a_log, dt_bias)."""
    fast = fast_layout(k.shape[-1], v.shape[-1], heads) if _mode(k.device) else None
    if fast is not None:
        fused = fused_frame_fwd(k, v, params, heads, initial_state, save, fast)
        if fused is not None:
            return *fused, (fused[1][:, -1].contiguous() if want_final else None)
    return frame_fwd(k, v, *params, heads, initial_state, save, want_final)
