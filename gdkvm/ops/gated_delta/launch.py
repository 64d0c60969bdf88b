"""Launch configuration of the token-rule kernels and the switches read per call.

``heuristic`` gives each kernel its value tile, warps and stages (measured on an H100, overridable through
``GDKVM_TOKEN_CONFIG``); ``autotuning``/``tuned`` wrap kernels in Triton's autotuner when ``GDKVM_AUTOTUNE=1``;
``intermediate_dtype`` (``GDKVM_TOKEN_PRECISION``), ``output_mode`` (``GDKVM_TOKEN_O``), ``backward_mode``
(``GDKVM_TOKEN_BWD``) and ``n_segments`` (``GDKVM_TOKEN_SEGMENTS``) pick between the kernels' paths. Nothing here
launches a kernel.
"""

from __future__ import annotations

import json
import os

import torch
import triton
import triton.testing

from gdkvm.ops._host import cdiv, interpreting, next_power_of_2

# Launch configurations. On a GPU the autotuner picks among these (pruned to what fits an H100's 227 KB of shared
# memory per block, see ``_prune``); with GDKVM_AUTOTUNE=0 or under the interpreter ``heuristic`` picks one. BV trades
# parallelism (B*H*V/BV programs on 132 SMs) against work per sequential step. Shared memory measured by compiling
# for sm_90 (triton 3.9, bf16 inputs, fp32 intermediates): state kernels 82 KB (K 64, BV 16), 127 KB (K 128, BV 16),
# 180 KB (K 128, BV 64), 82-107 KB (K 256, chunk 32, BV 32); prep 37-49 KB; chunk backward 90 KB (K 64), 156 KB
# (K 128), 98 KB (K 256, chunk 32).
SM_COUNT = 132  # streaming multiprocessors of an H100 SXM or H200: one wave of sequential-pass programs
STATE_CONFIGS = [
    triton.Config({"BV": bv}, num_warps=warps, num_stages=stages)
    for bv, warps, stages in ((16, 4, 2), (32, 4, 2), (64, 4, 2), (16, 4, 1))
]  # 4 warps only: the 8-warp variants gained nothing on the sequential passes and are a miscompile suspect
PARALLEL_CONFIGS = [triton.Config({}, num_warps=warps) for warps in (4, 8)]
_TUNED: dict[str, object] = {}


def _state_bv_cap(key_dim: int) -> int:
    """Widest value tile of the state kernels for a key dimension: the [K, BV] fp32 state lives in registers and the
    [K, BV] operand tiles in shared memory, so BV shrinks as K grows."""
    return 64 if key_dim <= 128 else 32


def _prune(configs: list, named_args: dict, **kwargs: object) -> list:
    """Drops value tiles wider than V needs or than K allows, and 8 warps at K > 128 (register pressure)."""
    value_dim, key_dim = int(named_args["V"]), int(named_args["K"])
    widest = min(_state_bv_cap(key_dim), max(16, next_power_of_2(value_dim)))
    kept = [c for c in configs if c.kwargs.get("BV", 0) <= widest and (key_dim <= 128 or c.num_warps <= 4)]
    return kept or configs[:1]


def autotuning() -> bool:
    """Autotune on a GPU only with GDKVM_AUTOTUNE=1; by default ``heuristic`` picks the configuration. (Off by
    default since one autotune candidate of the state pass hit an illegal memory access on an H100 with triton 3.6,
    2026-11-27; the heuristic configurations pass every GPU test and bench check.)"""
    return not interpreting() and os.environ.get("GDKVM_AUTOTUNE", "0") == "1"


def _quick_bench(fn, quantiles=None, **kwargs: object):
    """The autotuner's timer: short windows (5 ms warm-up, 25 ms), enough to rank a handful of configurations."""
    return triton.testing.do_bench(fn, warmup=5, rep=25, quantiles=quantiles)


def tuned(kernel, name: str, configs: list, state_kernel: bool):
    """The autotuned wrapper of ``kernel`` (built once, on first use, so importing compiles nothing)."""
    if name not in _TUNED:
        prune = {"early_config_prune": _prune} if state_kernel else None
        _TUNED[name] = triton.autotune(
            configs=configs, key=["H", "K", "V", "T"], prune_configs_by=prune, do_bench=_quick_bench
        )(kernel)
    return _TUNED[name]


def intermediate_dtype(dtype: torch.dtype, key_dim: int = 64) -> torch.dtype:
    """dtype of the stored intermediates (w, u, A, U, per-chunk states) and of the tensor-core operands built from
    them. fp32 (TF32 products) by default: bf16 intermediates alone cost about 3-5e-3 relative RMS on o (measured by
    simulation), too close to the 5e-3 test bound. ``GDKVM_TOKEN_PRECISION=fast`` keeps them in the input dtype
    (FLA's choice: half the intermediate traffic, bf16 tensor cores). On Hopper with triton 3.6 the 4-warp prep and
    reverse state pass miscompile with 16-bit operands (non-finite u at V 32, diverging dS, illegal addresses; FLA
    restricts its Hopper warps for the same class of bug, FLA PR 988); at 2 warps every launch and gradient is right
    (H200, 2026-11-27, ``bench/ops_token.py --check --check-precisions fast``), so ``heuristic`` gives those two
    kernels 2 warps whenever the intermediates are 16-bit. Above K 64 the 2-warp reverse pass is 10x slower than the
    fp32 one (17.4 vs 1.8 ms at B8 T4096 H16 K128), so fast mode keeps fp32 intermediates there."""
    if os.environ.get("GDKVM_TOKEN_PRECISION", "high") == "fast" and key_dim <= 64:
        return dtype
    return torch.float32


def check_precision_mode(device: torch.device) -> None:
    """Raises RuntimeError (naming ``device``, the tensors' device) for GDKVM_TOKEN_PRECISION values other than
    "high" and "fast"."""
    mode = os.environ.get("GDKVM_TOKEN_PRECISION", "high")
    if mode not in ("high", "fast"):
        raise RuntimeError(f"GDKVM_TOKEN_PRECISION must be 'high' or 'fast', got {mode!r} on {device}")


HILO_DEFAULT = "off"


def split16(in_dtype: torch.dtype, inter_dtype: torch.dtype, kernel: str) -> bool:
    """Whether the state pass ``kernel`` ("fwd": the forward state pass and its segment summaries, "bwd": the reverse
    ones) multiplies the 16-bit input tiles (q, k) by its fp32 tiles as a bf16 head and tail (``_dot_hilo``) rather
    than in TF32: only for bf16 inputs with fp32 intermediates (not fp16, whose range the tail of a large state could
    leave), and where ``GDKVM_TOKEN_HILO`` (read per call: "off" (default), "fwd", "bwd" or "both") allows it. Off by
    default: exact in the CPU tests, but the GPU oracle test failed with it in either pass (H200, triton 3.6,
    2026-11-27), while the same kernels without it pass."""
    mode = os.environ.get("GDKVM_TOKEN_HILO", HILO_DEFAULT)
    if mode not in ("fwd", "bwd", "both", "off"):
        raise ValueError(f"GDKVM_TOKEN_HILO must be 'fwd', 'bwd', 'both' or 'off', got {mode!r}")
    return in_dtype == torch.bfloat16 and inter_dtype == torch.float32 and mode in (kernel, "both")


def key_decay() -> int:
    """How the state passes apply a per-head decay, from ``GDKVM_TOKEN_DECAY`` (read per call): 0 ("value": to the
    [BT, BV] value-side tiles, k and q reach the tensor cores as loaded), 1 ("key": to the [BT, K] tiles of k and q,
    the formulation GPU-tested before 2026-11-27), 2 ("keyt": as 1, but the forward state pass loads k transposed and
    scales its columns, so no register tile is transposed on the chain; every other kernel takes it as 1) or "auto"
    (default: 0, in both precisions). Fast mode kept the key side until 2026-11-29 (its value-side kernels hit one
    illegal memory access in seven H200 runs, 2026-11-27, never seen again); on the value side its forward went
    0.509 -> 0.459 ms at B4 T10240 H8 K64 V64 (H200). "keyt" gained nothing there (0.527 ms) and stays opt-in."""
    mode = os.environ.get("GDKVM_TOKEN_DECAY", "auto")
    if mode not in ("auto", "value", "key", "keyt"):
        raise ValueError(f"GDKVM_TOKEN_DECAY must be 'auto', 'value', 'key' or 'keyt', got {mode!r}")
    if mode == "auto":
        return 0
    return ("value", "key", "keyt").index(mode)


def prec(dtype: torch.dtype) -> str:
    """Input precision of fp32 tl.dot operands: IEEE for fp32 inputs, TF32 for 16-bit inputs (as FLA's solve)."""
    return "ieee" if dtype == torch.float32 else "tf32"


def heuristic(kernel: str, key_dim: int, value_dim: int, batch_heads: int, narrow: bool = False) -> dict[str, int]:
    """The launch configuration of ``_heuristic`` (``narrow``: the intermediates are 16-bit, fast mode), with
    ``GDKVM_TOKEN_CONFIG`` applied (read per call): a JSON object such as ``{"prep": {"num_warps": 4}}`` overriding
    fields per kernel, for measuring alternatives (bench/token_configs.py)."""
    cfg = _heuristic(kernel, key_dim, value_dim, batch_heads)
    if narrow and kernel in ("prep", "state_bwd", "state_bwd_pre"):
        cfg["num_warps"] = 2  # 4 warps miscompile with 16-bit operands on Hopper, triton 3.6 (see intermediate_dtype)
    if narrow and kernel == "state" and key_dim <= 64 and not interpreting():
        # 16-bit operands pipeline 3 deep (H200, 2026-11-29, forward pass ms: 0.351 -> 0.241 at B4 T10240 H8 K64 V64,
        # 0.095 -> 0.065 at B4 T2560, 0.199 -> 0.178 at B1 T25600 V32); fp32 ones gain less and lose at V 32
        cfg["num_stages"] = 3
    raw = os.environ.get("GDKVM_TOKEN_CONFIG")
    if raw:
        try:
            override = json.loads(raw).get(kernel, {})
        except (ValueError, AttributeError) as err:
            raise ValueError(f"GDKVM_TOKEN_CONFIG must be a JSON object of per-kernel objects, got {raw!r}") from err
        cfg.update({name: int(value) for name, value in override.items() if name in cfg})
    return cfg


def _heuristic(kernel: str, key_dim: int, value_dim: int, batch_heads: int) -> dict[str, int]:
    """Launch configuration without autotuning: {"BV", "num_warps", "num_stages"} for kernel "prep", "gram" (the split
    prep's T launch), "state" (the forward sequential pass), "state_bwd" (the backward one), "state_bwd_pre" (the
    backward chain of the prepass mode, ``backward_mode``) or "chunk_bwd". BK always covers K whole (K <= 256).

    Measured on an H100 (triton 3.6, bf16, bench/token_configs.py, 2026-11-27; every candidate gave the same o and
    gradients): the state passes use 4 warps and split V finer while batch*heads alone gives too few programs to fill
    132 SMs, down to BV 16 (K <= 64) or 32 (K 128; 0.234 vs 0.355 ms forward, 0.429 vs 0.759 ms backward at B4 T2560
    H8 K128 V128); the backward pass is fastest unpipelined (1 stage: 0.690 vs 1.023 ms at B4 T10240 H8 K64 V64),
    its two-product prepass chain pipelined, 3 deep at K 64 and 2 at K 128 (H200, 2026-11-29, high mode: 0.567 vs
    0.720 ms with 1 stage and 0.620 with 2 at B4 T10240 H8 K64; 0.326 vs 0.392 ms and 0.356 with 3 at B4 T2560 K128).
    The prep kernel runs 4 warps up to K 128 (0.432 vs 0.887 ms with 8 at B4 T10240 K64, 0.167 vs 0.279 at K128);
    the chunk backward 8 (4 spill heavily on sm_90)."""
    bk = block_k(key_dim)
    widest = max(16, next_power_of_2(value_dim))
    pipelined = 1 if interpreting() else None
    if kernel in ("state", "state_bwd", "state_bwd_pre"):
        k128 = 64 < key_dim <= 128
        bv, narrowest = min(_state_bv_cap(key_dim), widest), 32 if k128 else 16
        while bv > narrowest and batch_heads * cdiv(value_dim, bv) < SM_COUNT:
            bv //= 2
        pre_stages = 3 if key_dim <= 64 else 2 if k128 else 1  # K 256 (chunk 32): unmeasured, kept unpipelined
        stages = {"state": 1 if k128 else 2, "state_bwd": 1, "state_bwd_pre": pre_stages}[kernel]
        return {"BV": bv, "num_warps": 4, "num_stages": pipelined or stages}
    if kernel == "prep":
        return {
            "BV": min(64 if bk <= 128 else 32, widest),
            "num_warps": 4 if bk <= 128 else 8,
            "num_stages": pipelined or 3,
        }
    if kernel == "gram":  # chunk_gram: [16, 16] tiles, one warp (as fla-core's Gram + solve kernel); unmeasured
        return {"BV": 16, "num_warps": 1, "num_stages": pipelined or 1}
    if kernel == "chunk_bwd":  # 2 stages above K 64: 2.92 vs 3.34 ms at B8 T4096 H16 K128 (H200), 3 at K 64
        return {"BV": min(32, widest), "num_warps": 8, "num_stages": pipelined or (2 if bk > 64 else 3)}
    raise ValueError(f"unknown kernel {kernel!r}")


def block_k(key_dim: int) -> int:
    """Key tile: K whole, padded to a power of two (at least 16, the smallest tl.dot dimension)."""
    return max(16, next_power_of_2(key_dim))


def output_mode() -> str:
    """``GDKVM_TOKEN_O`` (read per call): "fused" (default) emits o inside the sequential state pass; "split" keeps
    only U and S on the sequential chain and computes o in the fully parallel ``_output_kernel`` from the stored
    per-chunk states; "folded" keeps o in the state pass but has the prep fold A w and A u into Q' = scale (Q * e^G)
    - A w and A u, so the pass computes o = Q' S + A u from S alone."""
    mode = os.environ.get("GDKVM_TOKEN_O", "fused")
    if mode not in ("fused", "split", "folded"):
        raise ValueError(f"GDKVM_TOKEN_O must be 'fused', 'split' or 'folded', got {mode!r}")
    return mode


def prep_mode() -> str:
    """``GDKVM_TOKEN_PREP`` (read per call): "fused" (default) builds each chunk's T, A, w and u in one launch;
    "split" (opt-in, CPU-tested, not yet timed) first builds T from 16 x 16 blocks in a one-warp launch
    (``chunk_gram``), then runs the prep with T loaded. Split applies to a per-head gate at chunk 64; elsewhere the
    prep stays fused."""
    mode = os.environ.get("GDKVM_TOKEN_PREP", "fused")
    if mode not in ("fused", "split"):
        raise ValueError(f"GDKVM_TOKEN_PREP must be 'fused' or 'split', got {mode!r}")
    return mode


def backward_mode() -> str:
    """How the backward runs its reverse state pass, from ``GDKVM_TOKEN_BWD`` (read per call): "chain" (one
    sequential launch carrying all four products per chunk, ``chunk_bwd._state_bwd_kernel``), "prepass" (the two
    products that need only dO first, in a parallel launch, then a chain of two; ``chunk_bwd_pre``) or "auto"
    (default): prepass where the chain runs in one wave (programs <= ``SM_COUNT``, no segments), chain elsewhere.
    H200, 2026-11-29, high mode, reverse pass ms (chain / prepass): 0.760 / 0.567 at B4 T10240 H8 K64 V64 (128
    programs), 0.196 / 0.153 at B4 T2560, 0.428 / 0.326 at B4 T2560 K128 (128 programs), but 1.602 / 1.905 at B8 T4096
    H16 K128 (256 programs: the chain's latency is hidden by a second program per SM, the prepass only adds traffic)."""
    mode = os.environ.get("GDKVM_TOKEN_BWD", "auto")
    if mode not in ("auto", "chain", "prepass"):
        raise ValueError(f"GDKVM_TOKEN_BWD must be 'auto', 'chain' or 'prepass', got {mode!r}")
    return mode


def solve_mode(num_warps: int = 4) -> str:
    """How the prep kernel inverts each chunk's unit-lower matrix, from ``GDKVM_TOKEN_SOLVE`` (read per call):
    "doubling" (recursive doubling, every product on tensor cores, see ``_solve_unit_lower_doubling``), "regs"
    (forward substitution on the 16 x 16 diagonal blocks in registers, then a block merge), "scratch" (the same
    substitution reading its rows back from global memory) or "auto" (default): doubling for a prep of 4 or more
    warps, regs below (2 warps, fast mode: no warp-group tensor cores; 0.887 vs 0.347 ms at B4 T10240 with doubling
    and the folded output together, which alone adds 13-31% to a 4-warp prep).
    On an H200 (triton 3.6, 2026-11-27, fp32 intermediates) doubling cut the prep by 9-23% against regs (0.421 ->
    0.323 ms at B4 T10240 H8 K64, 0.252 -> 0.198 at B1 T25600 V32, 0.919 -> 0.838 at B8 T4096 H16 K128); regs had cut
    it by 4-12% against scratch (H100)."""
    mode = os.environ.get("GDKVM_TOKEN_SOLVE", "auto")
    if mode not in ("auto", "scratch", "regs", "doubling"):
        raise ValueError(f"GDKVM_TOKEN_SOLVE must be 'auto', 'scratch', 'regs' or 'doubling', got {mode!r}")
    if mode == "auto":
        return "doubling" if num_warps >= 4 else "regs"
    return mode


def n_segments(n_chunks: int, programs: int) -> int:
    """Number of time segments the sequential passes are cut into (segment-parallel scan), from
    ``GDKVM_TOKEN_SEGMENTS`` (read per call): "auto" (default), "1" (one serial walk over all chunks) or an integer.
    Segments cost about (2 + K / V) times the serial work, so "auto" uses them only when the plain pass has at most
    a quarter of the ~264 programs an H100 runs at once (few batch*heads, long T): then about 264 / programs
    segments of at least 4 chunks. On an H100 (2026-11-27) "auto" halved B1 T25600 H8 K64 V32 (forward 1.58 ->
    0.81 ms, forward + backward 4.60 -> 2.41 ms) and was neutral or slightly faster at the other benchmark shapes."""
    raw = os.environ.get("GDKVM_TOKEN_SEGMENTS", "auto")
    if raw == "auto":
        if programs * 4 > 264:
            return 1
        want = 264 // max(1, programs)
    else:
        want = int(raw)
    return max(1, min(want, n_chunks // 4 if raw == "auto" else n_chunks))


def overlap_pieces() -> int:
    """Number of chunk pieces of an overlapped forward (``chunk_overlap``), from ``GDKVM_TOKEN_OVERLAP`` (read per
    call): "off" (default, 1) or an integer >= 1. Off: on an H100 (2026-11-27, docs/benchmarks.md token rule, eighth
    round) 8 pieces cut the forward 12% at B4 T10240 only and cost 2-15% at the other issue shapes."""
    raw = os.environ.get("GDKVM_TOKEN_OVERLAP", "off")
    if raw == "off":
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"GDKVM_TOKEN_OVERLAP must be 'off' or a positive integer, got {raw!r}")
    return int(raw)


def _segment_plan(
    n_chunks: int, batch_heads: int, key_dim: int, value_dim: int, kernel: str = "state", narrow: bool = False
) -> tuple[int, int, dict]:
    """(NS, chunks per segment, heuristic config of ``kernel``, "state" or "state_bwd"); NS = 1: the plain serial
    pass."""
    cfg = heuristic(kernel, key_dim, value_dim, batch_heads, narrow)
    ns = n_segments(n_chunks, batch_heads * cdiv(value_dim, cfg["BV"]))
    cps = cdiv(n_chunks, ns)
    return cdiv(n_chunks, cps), cps, cfg
