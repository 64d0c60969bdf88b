"""The frame-rule forward's overlap (``TUNING["walk_overlap"]``): the lean walk launched first, the Gram pre-pass
(and with 2 the readout) beside it on a side stream, synchronised by per-frame int32 counters in device memory. Where
it applies (``overlap_fits``), the counters (``overlap_counters``), and the launches (``side_launch``,
``run_beside``). The kernels' side is in ``triton_gram`` (``SIGNAL``), ``triton_lean`` (``WAIT``, ``NOTIFY``) and
``triton_fwd.readout_kernel`` (``WAIT``); gdkvm/ops/frame/README.md tells why nothing can wait forever.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import triton

from gdkvm.ops._host import interpreting
from gdkvm.ops._launch_cache import current_device, current_stream, run_entry, usable
from gdkvm.ops.frame.tuning import TUNING, _on_gpu, launch_planned, planned_entry, sm_count


def overlap_fits(walkers: int, t: int, device: torch.device) -> bool:
    """Whether the Gram pre-pass may run beside a walk of ``walkers`` programs over ``t`` frames
    (``TUNING["walk_overlap"]``, clips of at most ``overlap_max_t`` frames): on CUDA only while they leave at least
    one SM free, so that Gram programs always find room while walkers wait for them."""
    if not TUNING["walk_overlap"] or t > int(TUNING["overlap_max_t"]):
        return False
    return device.type != "cuda" or walkers < sm_count(device.index or 0)


def readout_fits(b: int, t: int, n: int, dk: int, dv: int, bh: int, out_bytes: int, save: bool) -> bool:
    """Whether the readout also runs beside the walk: ``TUNING["walk_overlap"]`` 2, or 3 where that raises the
    forward's own peak memory by at most ``overlap_read_pct`` percent. Beside the walk its output [B, T, N, Dv]
    (``out_bytes`` per element) must exist while the Gram's walk-only buffers do (the split K_t^T K_t
    [B, T, 2, Dk, Dk] and the gate projections [B, T, Dk, 2 BH^2], fp32), which after the walk it would reuse. Peaks
    counted above the inputs: K_t^T V_t [B, T, Dk, Dv] (the states in place), with ``save`` also the states
    [B, T + 1, Dk, Dv] and K_t^T K_t."""
    mode = int(TUNING["walk_overlap"])
    if mode != 3:
        return mode == 2
    frames = b * t
    kept = frames * dk * dv * 4 + (b * (t + 1) * dk * dv * 4 + frames * dk * dk * 4 if save else 0)
    walk_only = frames * (2 * dk * dk + 2 * dk * bh * bh) * 4
    out = frames * n * dv * out_bytes
    return kept + walk_only + out <= (100 + int(TUNING["overlap_read_pct"])) * (kept + max(walk_only, out)) // 100


_SIDE: dict[tuple[int, int], tuple] = {}


def run_beside(
    walk: Callable[[], object],
    before: Callable[[int | None], object] | None,
    after: Callable[[int | None], object] | None = None,
    warm: bool = False,
) -> None:
    """Launch the walk and the launches whose per-frame counters it waits on (``before``: the Gram pre-pass) or that
    wait on its counters (``after``: the readout). Each of those is called with a raw CUDA stream to launch on (then
    its compiled kernel has run before, see below), or with None (then it launches on the current stream).

    Where ``warm`` (a CUDA launch whose side launches' compiled kernels have all run before: their launch then
    compiles and loads nothing, which could wait for the device to go idle while the walk waits for them), the walk
    goes first on the current stream (its programs resident and waiting) and ``before`` and ``after`` on a side
    stream forked from and joined back into it, so later work on the current stream (and the caching allocator's
    reuse of their buffers) follows all three. Otherwise they run in turn: before, walk, after (as under the
    interpreter, which runs programs one by one). The side stream and its two events are made once per current
    stream, and the side launches take the stream as an argument: no stream switch, no new event per call (host
    time)."""
    if not warm or interpreting():
        if before is not None:
            before(None)
        walk()
        if after is not None:
            after(None)
        return
    cur, stream, fork, join = _side_streams(current_device())
    fork.record(cur)
    stream.wait_event(fork)
    walk()
    for launch_side in (before, after):
        if launch_side is not None:
            launch_side(stream.cuda_stream)
    join.record(stream)
    cur.wait_event(join)


_KEPT: dict[tuple, tuple] = {}


def launch_overlapped(token: object, walk: tuple, sides: tuple, inputs: tuple) -> None:
    """Launch the walk of plan ``token`` and, beside it, the launches ``sides`` (the Gram pre-pass, then optionally
    the readout), each given as (kernel, grid, positional arguments, keyword arguments) of ``launch_planned``, as
    ``run_beside`` does. ``inputs``: the tensors of these arguments that the caller did not allocate itself (the
    op's inputs; fresh allocations are 512-byte aligned).

    Once a warm overlapped launch of the plan has run on this device with every input 16-byte aligned, the compiled
    kernels of its launches are kept (by token and device), and later aligned calls run them directly: no per-launch
    key, lookup or closure (the forward's host time: ``frame_fwd`` 37 -> 24 us per call in a CPU harness, the whole
    forward's 117-246 -> 88-134 us on an H200 host, docs/benchmarks.md)."""
    kept = _on_gpu(inputs[0]) and not interpreting() and not _unaligned(inputs)  # may use or keep compiled kernels
    if kept and _run_kept(token, walk, sides):
        return
    launches = [side_launch(token, *side) for side in sides]
    warm = all(w for _, w in launches)
    kernel, grid, args, kwargs = walk
    run_beside(
        lambda: launch_planned(token, kernel, grid, *args, **kwargs),
        launches[0][0], launches[1][0] if len(launches) > 1 else None, warm,
    )  # fmt: skip
    if kept and warm:
        entries = tuple(planned_entry(token, kernel, *args) for kernel, _, args, _ in (walk, *sides))
        if all(entry is not None for entry in entries):
            if len(_KEPT) >= 256:
                _KEPT.clear()
            _KEPT[(token, current_device())] = entries


def _unaligned(tensors: tuple) -> int:
    """Nonzero where a tensor's address is off a 16-byte boundary (Triton specialises on that)."""
    bits = 0
    for x in tensors:
        bits |= x.data_ptr()
    return bits & 15


def _run_kept(token: object, walk: tuple, sides: tuple) -> bool:
    """``run_beside``'s warm launches through the compiled kernels that ``launch_overlapped`` kept for ``token``;
    False, having launched nothing, where none are kept (or a launch hook is set: a profiler sees every launch
    through the JIT)."""
    device = current_device()
    entries = _KEPT.get((token, device))
    if entries is None or not usable(walk[0]):
        return False
    launches = [functools.partial(_run_side, entry, side) for entry, side in zip(entries[1:], sides)]
    run_beside(
        lambda: run_entry(entries[0], walk[1], current_stream(device), walk[2]),
        launches[0], launches[1] if len(launches) > 1 else None, True,
    )  # fmt: skip
    return True


def _run_side(entry: tuple, side: tuple, stream: int | None) -> None:
    """A kept side launch (``side`` = (kernel, grid, args, kwargs)) on the raw CUDA stream ``run_beside`` gives."""
    run_entry(entry, side[1], stream, side[2])


def _side_streams(device: int) -> tuple:
    """(current stream, its side stream, fork event, join event) of CUDA device ``device``, made once per current
    stream."""
    raw = current_stream(device)
    side = _SIDE.get((device, raw))
    if side is None:
        cur = torch.cuda.current_stream(device)
        side = _SIDE[(device, raw)] = (cur, torch.cuda.Stream(device), torch.cuda.Event(), torch.cuda.Event())
    return side


def side_launch(token: object, kernel: triton.JITFunction, grid: tuple[int, ...], args: tuple,
                kwargs: dict) -> tuple[Callable[[int | None], object], bool]:  # fmt: skip
    """(a launch for ``run_beside``, whether it is warm): on a raw stream through its compiled kernel
    (``planned_entry``), or with None as ``launch_planned(token, kernel, grid, *args, **kwargs)``."""
    entry = planned_entry(token, kernel, *args)

    def go(stream: int | None) -> object:
        if stream is None or entry is None:
            return launch_planned(token, kernel, grid, *args, **kwargs)
        return run_entry(entry, grid, stream, args)

    return go, entry is not None


_COUNTERS: dict[tuple, torch.Tensor] = {}


def _counters_key(token: object, device: torch.device) -> tuple:
    return token, device.index, current_stream(device.index) if device.type == "cuda" else 0


def overlap_counters(token: object, b: int, t: int, device: torch.device) -> torch.Tensor:
    """The int32 counters of ``frame_fwd``'s overlap for plan ``token``, zero at every call: [3 B T + B] holding
    flag[b, t, 0] (Gram programs of frame t counted, at 2 (b T + t)) and flag[b, t, 1] (walk slices that stored S_t, at
    2 (b T + t) + 1), then the readout programs of each frame that finished (2 B T + b T + t) and the walk programs
    of each clip that finished (3 B T + b). Made once per plan, device and current stream (work on one stream runs
    in order, so calls never share them at once): the last program to use a counter resets it to 0, so no memset
    runs per call. Inside CUDA graph capture a new tensor (its memset is captured): a tensor made there holds no
    zeros until the graph runs, so it must not serve another capture or call."""
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return torch.zeros(3 * b * t + b, device=device, dtype=torch.int32)  # the graph's own, zeroed at each replay
    key = _counters_key(token, device)
    flags = _COUNTERS.get(key)
    if flags is None:
        if len(_COUNTERS) >= 256:
            _COUNTERS.clear()
        flags = _COUNTERS[key] = torch.zeros(3 * b * t + b, device=device, dtype=torch.int32)
    return flags


def drop_counters(token: object, device: torch.device) -> None:
    """Forget plan ``token``'s counters on the current stream: after a failed launch, which may have left some of them
    counting (the program that resets them may not have run)."""
    _COUNTERS.pop(_counters_key(token, device), None)
