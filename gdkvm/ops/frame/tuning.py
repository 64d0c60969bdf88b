"""Launch configuration of the frame-rule kernels: the ``TUNING`` table, tile-size and warp rules (``safe_warps``
keeps Triton 3.6 from emitting the faulty narrow TF32 wgmma), ``tl.dot`` precisions per device and dtype, and
``launch`` (retries with smaller shared-memory needs). Nothing here defines a kernel.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
import triton

from gdkvm.ops._host import interpreting, next_power_of_2
from gdkvm.ops._launch_cache import cached_entry, cached_launch, keyed_launch


def dot_precision(dtype: torch.dtype, device: torch.device) -> str:
    """``tl.dot`` input precision of the parallel GEMMs over pixels: 3xTF32 (fp32-accurate) for fp32 inputs, TF32
    for bf16 ones (bf16 values are exact in TF32, products are exact, sums are fp32)."""
    if device.type != "cuda":
        return "ieee"
    return "tf32x3" if dtype == torch.float32 else "tf32"


def pixel_precision(dtype: torch.dtype, device: torch.device, knob: str) -> str:
    """``dot_precision``, or "hand3" (3xTF32 made by hand, ``tiles.dot_acc``) for fp32 inputs where
    ``TUNING[knob]`` asks for it: the compiler's "tf32x3" adds NaN selects that cost a third of a loop's
    instructions and its spills."""
    return "hand3" if TUNING[knob] and dtype == torch.float32 else dot_precision(dtype, device)


def serial_precision(device: torch.device) -> str:
    """``tl.dot`` input precision in the serial state kernels (fp32 state, small latency-bound dots): 3xTF32."""
    return "tf32x3" if device.type == "cuda" else "ieee"


class TuningTable(dict):
    """The ``TUNING`` dict, counting its changes in ``version`` (every way a dict is changed through its methods or
    operators), so that ``planned`` can tell an unchanged table without reading all of it on every op call."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def __setitem__(self, key: str, value: int | str) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def __ior__(self, other: object) -> TuningTable:
        self.update(other)
        return self

    def update(self, *args: object, **kwargs: object) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def pop(self, *args: object) -> object:
        self._changed()
        return super().pop(*args)

    def popitem(self) -> tuple:
        self._changed()
        return super().popitem()

    def setdefault(self, key: str, default: int | str | None = None) -> object:
        self._changed()
        return super().setdefault(key, default)

    def clear(self) -> None:
        super().clear()
        self._changed()


# Launch configuration, one table (bench/ops_frame.py --sweep times alternatives on a GPU and prints the best).
# Tile budgets are element counts of the largest [BK, BV] (or [BN, BK]) fp32 tile of a kernel. Every warp count is
# capped by ``safe_warps`` (see there) whatever this table says.
_TABLE: dict[str, int | str] = {
    # 1: repeated launches call their compiled kernel directly (gdkvm/ops/_launch_cache.py), without the JIT's
    # per-launch binding and specialisation; default from GDKVM_FRAME_LAUNCH_CACHE (0 or 1). Off: every frame GPU test
    # passes with it on (H200), but it saved 11-27 us of host time per forward on H100 hosts and nothing on an H200's
    # (bench/launch_cache_ab.py, docs/benchmarks.md: frame rule, ninth and eleventh rounds)
    "launch_cache": int(os.environ.get("GDKVM_FRAME_LAUNCH_CACHE", "0")),
    # 1: the forward's and the streaming step's launches (memoised plans: ``launch_planned``) call the compiled kernel
    # of a plan and tensor alignment seen before directly; default from GDKVM_FRAME_PLAN_LAUNCH (0 or 1). On: all 70
    # frame GPU tests pass with it (H200, two calls) and it cut the forward's host time by 22-152 us in 6 of 6 A/B rows
    # (docs/benchmarks.md: frame rule, eleventh and twelfth rounds)
    "plan_launch": int(os.environ.get("GDKVM_FRAME_PLAN_LAUNCH", "1")),
    "fast_path": 1,  # 0: always use the one-program-per-clip recurrence (for tests and the sweep)
    "fast_slice": 32,  # value columns per program of the parallel recurrence (a power of two dividing Dv/H)
    "fast_warps": 4,  # 4 vs 8: 0.190 vs 0.194 ms at B10 T10 N256, 0.475 vs 0.496 at B32 (H100, batch sweep)
    "fast_prec": "tf32x3",  # tl.dot precision of the parallel recurrence on CUDA: "tf32x3" or "ieee"
    "fast_psum_dot": 0,  # 1: head sums of Q by a 0/1 matrix product instead of a reshape and sum
    # 1: the lean parallel recurrence (triton_lean.py) for keys up to 64; 0: fwd_parallel_kernel
    "fast_lean": 1,
    # slices of several heads where batch x slices exceeds the SMs (walker_slice): B32 T10 N256 recurrence 121 vs 186 us
    # (H100), forward 0.414 vs 0.483 ms; B10 unchanged (80 programs fit)
    "fast_wide_slices": 1,
    "fast_max_slice": 64,  # widest slice walker_slice may choose
    "fwd_state_tile": 2048,
    "fwd_warps": 4,
    "bwd_state_tile": 1024,
    "bwd_light_tile": 2048,
    "bwd_warps": 4,
    "bwd_min_bh": 16,  # head padding of the backward recurrence; 32 lets safe_warps allow 8 warps (with BV >= 32)
    "bwd_sliced": 1,  # 1: reverse recurrence by value slices (triton_bwd_sliced.py); 0: one program per clip
    "bwd_slice": 32,  # value columns per program of the sliced reverse recurrence
    "bwd_slice_warps": 4,
    "bwd_persistent": 1,  # sliced walk in one cooperative launch: 0 never, 1 on CUDA, 2 always (compile checks only)
    # forward in one launch (triton_fwd_fused.py): 0 never, 1 on CUDA, 2 phased, 3 compile only. Off: on an H100 it
    # tied the three launches at best (B10 T10 N256 0.176-0.191 vs 0.190 ms at 2 programs per SM, 0.42-0.47 at 1)
    # and lost on long clips (B1 T200 N64 2.08-2.3 vs 1.7 ms); its workers' tasks are latency-bound
    "fused_fwd": 0,
    "fused_per_sm": 1,  # programs of the one-launch forward per SM (walkers + workers)
    "fused_min_workers": 16,  # fewer free programs than this: the three-launch forward
    "fused_sync": 1,  # 1: readouts of frame t wait for S_t; 2: for the walk's end
    "fused_read_cols": 64,  # value columns per readout task of the one-launch forward (64 at a time)
    "fused_lookahead": 4,  # frames whose Gram counters one wait of a walker reads (power of two)
    "fused_max_bk": 64,  # wider keys: the three-launch forward (the one-launch kernel spills ~10 KB/thread at Dk 128)
    "fused_capture": 0,  # 1: also inside CUDA graph capture (bench/ops_frame.py tries it for its graph column)
    # 1: the lean walk starts first and the Gram pre-pass runs beside it on a side stream, in frame order, the walk
    # waiting for each frame's Gram programs (per-frame counters) instead of for the whole launch; only where the
    # walk's programs leave an SM free (no wait can then block the Gram). 2: the readout too, after the Gram on the
    # side stream, each frame's programs waiting for the walk's S_t. H200, forward kernels as a CUDA graph at B10 T10
    # N256: 0.1356 ms (0) -> 0.1188 (1) -> 0.1133 (2); the op in a loop 0.1383 -> 0.1221 -> 0.1166 once the counters
    # were made once per plan and reset by the kernels. But with 2 the output must exist before the walk, so it
    # cannot reuse the Gram's freed buffers: at B10 T10 N64 the forward's peak memory rose above the eager loop's
    # (19.4 vs 13.1 MiB; docs/benchmarks.md, frame rule, fifteenth round). 3 (default): 2 where that raises the
    # forward's own peak by at most overlap_read_pct percent (overlap.readout_fits: fp32 B10 T10 N256 +20%), else 1
    # (N64 +50%). From GDKVM_FRAME_WALK_OVERLAP
    "walk_overlap": int(os.environ.get("GDKVM_FRAME_WALK_OVERLAP", "3")),
    "overlap_read_pct": 25,
    # clips of more frames keep the walk alone (B1 T100 / T200: the Gram is small beside a long walk, and programs
    # waiting beside it slow its serial frame step: 5-14% with the readout waiting beside the walk, fourth round)
    "overlap_max_t": 32,
    "overlap_lookahead": 4,  # frames whose Gram counters one wait of the overlapped walk reads (power of two)
    # > 0: nanoseconds that a program waiting on a counter beside the walk sleeps between polls (the walk waiting on
    # the Gram's, the readout on the walk's; ``tiles.nap``, CUDA only), leaving its SM's issue slots and the
    # counter's L2 line to the programs that will move it; 0: spin. H200, forward kernels as a CUDA graph, 0 / 64 /
    # 256 / 1024 ns: B10 T10 N256 0.1141 / 0.1133 / 0.1136 / 0.1141 ms, B10 T10 N64 0.0812 / 0.0798 / 0.0797 / 0.0803
    # (2026-11-29): the spinning was not what slows the walk beside the Gram. Default from GDKVM_FRAME_SPIN_SLEEP
    "spin_sleep": int(os.environ.get("GDKVM_FRAME_SPIN_SLEEP", "256")),
    "gram_tile": 4096,
    # > 0: that many value columns per Gram program in one tile, pixels outside (gram_wide_task). Off: slower in every
    # setting on an H100 (B10 T10 N256 pre-pass 76-115 us vs 65 by head, B32 227-330 vs 186)
    "gram_cols": 0,
    "gram_wide_bn": 64,  # pixels per step of the wide Gram program, at most gram_wide_tile / its columns
    "gram_wide_tile": 8192,
    "gram_wide_warps": 8,
    "gram_heads": 1,  # heads per by-head Gram program; 2 and 4: 68-69 us vs 65 at B10 T10 N256, 191-199 vs 186 at B32
    "gram_warps": 4,
    # 1: no K^T K program per frame; the column programs compute it, 16 or more of its columns each (the K^T K
    # programs ran as the launch's tail). Off: on an H200 the forward's kernels (CUDA graph) were slower or tied at
    # every issue shape (B10 T10 N256 0.1417 -> 0.1423 ms, B32 0.3144 -> 0.3179, B1 T200 N64 1.158 -> 1.210)
    "gram_kk_spread": int(os.environ.get("GDKVM_FRAME_GRAM_KK_SPREAD", "0")),
    # 1: a by-head Gram program (gram_heads 1) projects its head's columns against that head's weight rows only, one
    # [Dk, 2 x padded heads] product, instead of [Dk, 2 BH^2] block products that are zero outside its head. H200
    # forward kernels (CUDA graph): B10 T10 N256 0.1501 -> 0.1414 ms, B32 0.3477 -> 0.3161, N64 0.0975 -> 0.0908
    "gram_own_head": 1,
    # 1: the Gram pre-pass's products (pixels for fp32 inputs, gate projections) in hand-made 3xTF32 (tiles.dot_acc,
    # no NaN selects): sm_90 loop body 1644 -> 1092 instructions, spill 80 -> 0 bytes; H100 pre-pass 65.3 -> 59.4 us
    # at B10 T10 N256, 33.4 -> 29.3 at N64, 186 -> 168 at B32 (2026-11-28; with the rounded splits of a9c4ea8, which
    # the ill-conditioned N1024 gradients need: 61.4, 26.7 at one stage, 173)
    "gram_hand3": 1,
    # 1: the readout's K_t S_t for fp32 inputs in hand-made 3xTF32 (as gram_hand3): H100 readout 96.3 -> 94.8 us at
    # B32 T10 N256, forward kernels 144.8 -> 143.5 at B10 T10 N256, 93.3 -> 92.5 at N64 (2026-11-28)
    "readout_hand3": 1,
    "readout_tile": 4096,
    # the lean walk's programs also read out their slice of O_t = K_t S_t while S_t is in registers, instead of
    # ``readout_kernel`` after the walk (one launch less; the walk's frame step gets longer): 0 never, 1 for clips of
    # at most walk_read_max_t frames, 2 always (default from GDKVM_FRAME_WALK_READOUT). ``walk_read_tile``: element
    # budget of its [pixels, Dk] key tile. Off: on an H200 the forward's kernels got slower at every issue shape
    # (B10 T10 N256 0.152 -> 0.190 ms as a CUDA graph, B1 T200 N64 1.17 -> 1.85); only a host-bound forward gains
    # from the launch it saves (B10 T10 N64 op time 0.148 -> 0.123 ms in one process)
    "walk_readout": int(os.environ.get("GDKVM_FRAME_WALK_READOUT", "0")),
    "walk_read_max_t": 16,
    "walk_read_tile": 4096,
    # value columns per readout program, rounded down to a multiple of its tile (64 at Dk 64, 32 at Dk 128) and looped
    # with K_t's rows loaded and split once; 0: one tile per program. Slower on an H100 (readout at B10 T10 N256: 29.5
    # us at one tile, 37.0 at 128 columns, 39.8 at 256; the same at N64 and B32, docs/benchmarks.md ninth round)
    "readout_cols": 0,
    "readout_warps": 4,
    # > 0: value columns per readout tile (a power of two >= 16, at most its pixels), more and smaller programs; 0: as
    # many as the tile's pixels. H200 forward kernels (CUDA graph, 0 -> 32 columns): B10 T10 N256 0.1417 -> 0.1381
    # ms, B32 0.3144 -> 0.3122, N64 0.0908 -> 0.0891, B1 T100 N256 0.6304 -> 0.6262, B1 T200 N64 1.158 -> 1.155;
    # 16 columns was slower (0.1446, 0.3409). Default from GDKVM_FRAME_READOUT_BV
    "readout_bv": int(os.environ.get("GDKVM_FRAME_READOUT_BV", "32")),
    "dkdv_tile": 4096,
    "dkdv_tile_k128": 2048,
    "dkdv_warps": 4,
    "step_tile": 2048,
    "step_warps": 4,
    # software-pipelining depth (num_stages) of each kernel's inner loops. ptxas reports every frame kernel but the
    # readout at 255 registers with spills on sm_90 (the 3-stage Gram pre-pass 1.3 KB per thread, 64 B at 1 stage),
    # yet on an H200 (2026-11-27 sweep) only the Gram's 2 stages helped, by 2%; the others are timing-neutral.
    # The Gram pre-pass takes 1 stage where one pixel tile covers the frame (``gram``)
    "gram_stages": 2,
    "fast_stages": 3,
    "readout_stages": 3,
    "bwd_stages": 3,
    "dkdv_stages": 3,
}
TUNING: TuningTable = TuningTable(_TABLE)


_PLANS: dict[tuple, object] = {}
_TABLE_SEEN = [-1, 0]  # (TUNING.version last seen, the id of its contents)
_TABLE_IDS: dict[tuple, int] = {}


def _table_id() -> int:
    """A small int naming ``TUNING``'s contents: equal tables get equal ids (a table changed and changed back plans
    as before); read again only after a change (``TuningTable.version``): hashing all of it cost ~1.5 us per plan."""
    if _TABLE_SEEN[0] != TUNING.version:
        contents = tuple(TUNING.items())
        _TABLE_SEEN[1] = _TABLE_IDS.setdefault(contents, len(_TABLE_IDS))
        _TABLE_SEEN[0] = TUNING.version
    return _TABLE_SEEN[1]


def planned(fn: Callable) -> Callable:
    """Memoise ``fn``, a pure function of hashable arguments (shapes, dtypes, devices, flags) and of ``TUNING``: a
    repeated call's launch plan is one dict lookup instead of the tile rules (host time of every op call). Callers
    must not mutate what it returns. At most 4096 plans are kept (a full table is cleared)."""

    @functools.wraps(fn)
    def wrapper(*args: object) -> object:
        key = (fn, args, _table_id())
        plan = _PLANS.get(key)
        if plan is None:
            if len(_PLANS) >= 4096:
                _PLANS.clear()
            plan = _PLANS[key] = fn(*args)
        return plan

    return wrapper


def safe_warps(warps: int, m: int, n: int) -> int:
    """Cap num_warps so that no tensor-core instruction of a dot [m, k] x [k, n] is narrower than 16 columns.

    Triton 3.6 splits a TF32 dot with m >= 64 over warpgroups along n (instruction width n * m / 16 / warps) and then
    emits ``wgmma m64n8k8`` for widths of 8, which reads shared memory past the operand (triton-lang/triton#10629:
    an illegal memory access on an H100, depending on how shared memory is packed). ``n`` is the narrowest dot of
    the kernel; the result is a power of two >= 4 (one warpgroup).
    """
    warps = max(4, int(warps))
    if m >= 64:
        while warps > 4 and n * (m // 16) < 16 * warps:
            warps //= 2
    return warps


def launch(kernel: triton.JITFunction, grid: tuple[int, ...], *args: object, **kwargs: object) -> object:
    """kernel[grid](*args, **kwargs) through ``_jit_launch``, or with ``TUNING["launch_cache"]`` (on a GPU) through
    ``gdkvm.ops._launch_cache``, which calls the compiled kernel of a repeated launch directly. Returns the compiled
    kernel."""
    if TUNING["launch_cache"] and not interpreting():
        return cached_launch(kernel, grid, _jit_launch, *args, **kwargs)
    return _jit_launch(kernel, grid, *args, **kwargs)


def _on_gpu(x: object) -> bool:
    """Whether a launch's first argument is a CUDA tensor (CPU tensors outside the interpreter: the ahead-of-time
    compiles of tests/ops/sm90_compile.py, which must take the JIT's path)."""
    return getattr(x, "is_cuda", False)


def launch_planned(token: object, kernel: triton.JITFunction, grid: tuple[int, ...], *args: object, **kwargs: object):
    """``launch`` for a launch whose constexprs, options, int arguments and tensor dtypes a memoised plan fixes
    (``token``: an object made once per plan, so one token means one set of them): with ``TUNING["plan_launch"]`` on
    a GPU the compiled kernel of a (token, kernel, tensor alignment) seen before is called directly
    (``_launch_cache.keyed_launch``), without the JIT's binding and specialisation. Returns the compiled kernel."""
    if not _keyed(token, args):
        return launch(kernel, grid, *args, **kwargs)
    return keyed_launch(_plan_key(token, kernel, args), kernel, grid, _jit_launch, *args, **kwargs)


def planned_entry(token: object, kernel: triton.JITFunction, *args: object) -> tuple | None:
    """The compiled kernel that ``launch_planned(token, kernel, grid, *args, ...)`` would call if it has run before
    (no compile and no module load, which may wait for the device to go idle: a launch that a running kernel waits
    for must not), as ``_launch_cache.run_entry`` takes it; else None."""
    return cached_entry(kernel, _plan_key(token, kernel, args), len(args)) if _keyed(token, args) else None


def _keyed(token: object, args: tuple) -> bool:
    return token is not None and bool(TUNING["plan_launch"]) and _on_gpu(args[0]) and not interpreting()


def _plan_key(token: object, kernel: triton.JITFunction, args: tuple) -> tuple:
    """(token, bit mask of the tensor arguments off a 16-byte boundary): with the plan, all Triton specialises on."""
    where = (token, id(kernel), len(args))  # (a JITFunction hashes through its source hash: ~1 us)
    hit = _TENSOR_ARGS.get(where)  # a plan passes tensors at the same positions on every launch
    if hit is None or hit[0] is not kernel:  # (the entry keeps its kernel: no other kernel takes its id meanwhile)
        if len(_TENSOR_ARGS) >= 4096:
            _TENSOR_ARGS.clear()
        hit = _TENSOR_ARGS[where] = (kernel, tuple(i for i, a in enumerate(args) if isinstance(a, torch.Tensor)))
    tensors = hit[1]
    unaligned = 0
    for i in tensors:
        if args[i].data_ptr() & 15:
            unaligned |= 1 << i
    return token, unaligned


_TENSOR_ARGS: dict[tuple, tuple] = {}


def _jit_launch(kernel: triton.JITFunction, grid: tuple[int, ...], *args: object, **kwargs: object) -> object:
    """Launch through the JIT; if the compiled kernel needs more shared memory than the device has (Triton raises
    OutOfResources before anything runs), retry with fp32 FMA dots (``PREC="ieee"``: no 3xTF32 operand copies), then
    4 warps."""
    try:
        return kernel[grid](*args, **kwargs)
    except triton.runtime.errors.OutOfResources:
        pass  # the retries below are built only here: this function runs on every launch (host time)
    ieee = {key: "ieee" for key in ("PREC", "SPREC") if kwargs.get(key) in ("tf32x3", "tf32")}
    retries = [ieee, {**ieee, "num_warps": 4}] if ieee else [{"num_warps": 4}]
    for i, change in enumerate(retries):
        try:
            return kernel[grid](*args, **{**kwargs, **change})
        except triton.runtime.errors.OutOfResources:
            if i == len(retries) - 1:
                raise
    raise AssertionError("unreachable: the last retry returns or raises")


def launch_cooperative(kernel: triton.JITFunction, grid: tuple[int, ...], *args: object, **kwargs: object) -> bool:
    """``launch`` as one cooperative grid (every program resident at once, as kernels whose programs wait for each
    other need). Returns False, having run nothing, where CUDA refuses it (a grid larger than what fits at once)."""
    try:
        launch(kernel, grid, *args, launch_cooperative_grid=True, **kwargs)
    except RuntimeError as err:
        if "cooperative" not in str(err).lower():
            raise
        return False
    return True


def pad_k(dk: int) -> int:
    """Padded key width BK (power of two, >= 16 for tl.dot)."""
    return max(16, next_power_of_2(dk))


def fit(budget: int, bk: int, cap: int = 64) -> int:
    """Largest power of two <= cap with bk * it <= budget, and at least 16."""
    return max(16, min(cap, next_power_of_2(max(1, budget // bk) + 1) // 2))


def block_sizes(dk: int, dv: int, heads: int, budget: int, min_bh: int = 16) -> tuple[int, int, int]:
    """(BK, BV, BH): padded key width, value tile of the serial kernels, padded head count (at least ``min_bh``); all
    >= 16 for tl.dot."""
    bk = pad_k(dk)
    bv = fit(budget, bk, max(16, next_power_of_2(dv)))
    bh = max(16, min_bh, next_power_of_2(heads))
    return bk, bv, bh


def walk_reads(t: int) -> bool:
    """Whether the lean walk of a T-frame clip reads out O_t itself (``TUNING["walk_readout"]``)."""
    mode = int(TUNING["walk_readout"])
    return mode == 2 or (mode == 1 and t <= int(TUNING["walk_read_max_t"]))


def fast_layout(dk: int, dv: int, heads: int) -> tuple[int, int] | None:
    """(BH, BV) of the parallel recurrence (``fwd_parallel_kernel``), or None where it does not apply.

    It applies for H <= 8 heads of a power-of-two width Dv/H >= 16 (the paper's 8 x 32 included): the per-head gate
    projections Q = [BK, BH * BH] (BH = padded head count, BQ = BH^2 >= 16) are then small, and a value slice of BV
    columns lies inside one head.
    """
    hd = dv // heads
    if not TUNING["fast_path"] or heads > 8 or hd < 16 or hd & (hd - 1):
        return None
    bh = max(4, next_power_of_2(heads))
    return bh, min(hd, max(16, next_power_of_2(int(TUNING["fast_slice"]))))


@functools.cache
def sm_count(index: int) -> int:
    """Streaming multiprocessors of CUDA device ``index``."""
    return torch.cuda.get_device_properties(index).multi_processor_count


def walker_slice(bv: int, dv: int, heads: int, batch: int, device: torch.device) -> int:
    """Value columns per program of the parallel recurrence: ``fast_layout``'s slice, doubled (up to
    ``TUNING["fast_max_slice"]``, whole heads per slice) while batch x Dv / slice programs exceed the device's SMs
    (``fast_wide_slices`` 1, CUDA only; 2: always as wide as allowed, for tests; 0: never). Not with fast_psum_dot."""
    mode, hd = int(TUNING["fast_wide_slices"]), dv // heads
    if mode == 0 or TUNING["fast_psum_dot"] or (mode == 1 and device.type != "cuda"):
        return bv
    limit = 0 if mode == 2 else sm_count(device.index or 0)
    while batch * (dv // bv) > limit and 2 * bv <= int(TUNING["fast_max_slice"]):
        if 2 * bv > hd and heads % (2 * bv // hd):
            break  # a slice of whole heads must divide the heads
        bv *= 2
    return bv


def spin_sleep() -> int:
    """Nanoseconds between polls of a waiting program (``TUNING["spin_sleep"]``): 0 under the interpreter (it runs no
    inline assembly, and its programs run one by one: nothing waits)."""
    return 0 if interpreting() else int(TUNING["spin_sleep"])


def serial_fast_precision(device: torch.device) -> str:
    """``tl.dot`` precision of ``fwd_parallel_kernel``: TUNING["fast_prec"] on CUDA, exact fp32 elsewhere."""
    return str(TUNING["fast_prec"]) if device.type == "cuda" else "ieee"
