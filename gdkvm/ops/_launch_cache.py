"""Repeated Triton launches without the JIT's per-call work.

``JITFunction.run`` binds the arguments, specialises each one (dtype, 16-byte alignment, ints equal to 1 or divisible
by 16), builds the compile-cache key and looks the kernel up on every launch; on an H100 host that is about half of
the frame forward's host time at B10 T10 N64 (docs/benchmarks.md). ``cached_launch`` keeps, per kernel, the compiled
kernel of each launch key it has seen and calls it as ``JITFunction.run`` does. Its key holds at least what Triton
specialises on (for tensors: dtype and alignment; for ints: the range, == 1 and % 16; other values whole) plus the
launch options, the constexprs and the device, so two launches with one key compile to the same kernel; an argument of
any other kind is not cached. Building the key is one flat loop over the arguments (the first version called a
function per argument and saved only a third of the JIT's time). ``keyed_launch`` takes the key from the caller
instead: a memoised launch plan knows everything but its tensors' addresses, so its key costs one alignment check per
tensor (on an H200 host building ``launch_key`` cost what the JIT's own binding costs, docs/benchmarks.md).

It only applies on CUDA with the Triton versions in ``SUPPORTED`` (whose ``CompiledKernel.run`` takes the arguments
used here; checked on a GPU), with no launch hooks (profilers) and no pre-run hooks set; elsewhere it returns None and
the caller launches through the JIT.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton

SUPPORTED = ("3.6.",)
_COMPILED: dict[tuple, tuple] = {}
_PARAMS: dict[int, tuple] = {}
_STREAM: Callable | None = None
_RUNTIME: object = None
_PLAIN = (bool, int, float, str, type(None))
_MAX_KEYS = 4096  # past this many launch keys, new ones go through the JIT uncached (values that change every call)


def _params(kernel: triton.JITFunction) -> tuple[list[tuple[str, object]], tuple[bool, ...]]:
    """Per parameter in signature order: (name, default), and whether it is a constexpr. Kept by ``id(kernel)``: a
    JITFunction hashes through its source hash (~1 us, several times per op call); the entry holds the kernel, so
    its id is not reused while the entry exists, and a hit is checked to be the same object."""
    hit = _PARAMS.get(id(kernel))
    if hit is None or hit[0] is not kernel:
        rows = [(p.name, p.default) for p in kernel.params]
        hit = _PARAMS[id(kernel)] = (kernel, rows, tuple(p.is_constexpr for p in kernel.params))
    return hit[1], hit[2]


def current_device() -> int:
    """The current CUDA device index, as ``torch.cuda.current_device()`` without its lazy-init check (callers launch
    on CUDA tensors, so CUDA is initialised); ``torch.cuda.current_device`` where torch has no such getter."""
    return _GET_DEVICE()


_GET_DEVICE: Callable[[], int] = getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device


def launch_key(kernel: triton.JITFunction, args: tuple, kwargs: dict, device: int) -> tuple | None:
    """The cache key of one launch on CUDA device ``device``, or None where an argument is of a kind this module does
    not cache.

    Per positional argument two entries: a tensor's dtype and its address mod 16; an int's class (== 1, % 16 == 0,
    other) and range (int32, int64, uint64), which is all Triton specialises an int on; any other plain value (and
    every constexpr) by type and value. Keyword arguments (constexprs, launch options) by name, type and value. This one
    flat loop is the whole per-launch cost of the cache: ~5 us for 21 arguments on a slow CPU (8.4 us before).
    """
    _, flags = _params(kernel)
    if len(args) > len(flags):
        return None
    key = [id(kernel), device, len(args)]
    add = key.append
    for a, constexpr in zip(args, flags):
        kind = type(a)
        if kind is int and not constexpr:
            add(1 if a == 1 else 2 if a % 16 == 0 else 0)
            add(0 if -(2**31) <= a < 2**31 else 1 if -(2**63) <= a < 2**63 else 2)
        elif isinstance(a, torch.Tensor) and not constexpr:
            add(a.dtype)
            add(a.data_ptr() & 15)
        elif kind in _PLAIN:
            add(kind)
            add(a)
        else:
            return None
    for name, a in kwargs.items():
        kind = type(a)
        if kind not in _PLAIN:
            return None
        add(name)
        add(kind)
        add(a)
    return tuple(key)


def bound_args(kernel: triton.JITFunction, args: tuple, kwargs: dict) -> list:
    """Every parameter's value in signature order (constexprs included, defaults filled in), as JITFunction.run
    passes them to the compiled kernel; launch options (num_warps, ...) are not parameters."""
    rows, _ = _params(kernel)
    return [*args, *(kwargs.get(name, default) for name, default in rows[len(args) :])]


def current_stream(device: int) -> int:
    """The raw CUDA stream Triton would launch on for ``device`` (its driver's getter, looked up once)."""
    global _STREAM
    if _STREAM is None:
        from triton.runtime.driver import driver

        _STREAM = driver.active.get_current_stream
    return _STREAM(device)


def _no_hook(hook: object) -> bool:
    """Whether a launch hook (None, or a ``HookChain`` since Triton 3.5) calls nothing."""
    return hook is None or (isinstance(getattr(hook, "calls", None), list) and not hook.calls)


def usable(kernel: triton.JITFunction) -> bool:
    """Whether launches of this kernel may go through the cache here (see the module docstring)."""
    global _RUNTIME
    if _RUNTIME is None:
        from triton import knobs

        _RUNTIME = knobs.runtime
    runtime = _RUNTIME
    return (
        triton.__version__.startswith(SUPPORTED)
        and _no_hook(runtime.launch_enter_hook)
        and _no_hook(runtime.launch_exit_hook)
        and not getattr(kernel, "pre_run_hooks", None)
    )


def cached_launch(kernel: triton.JITFunction, grid: tuple[int, ...], slow: Callable, *args: object, **kwargs: object):
    """Launch kernel[grid](*args, **kwargs): directly where this key's compiled kernel is known, else through
    ``slow(kernel, grid, *args, **kwargs)`` (which returns the compiled kernel, as ``kernel[grid](...)`` does), keeping
    what it returns for the next launch of the key. Returns the compiled kernel."""
    device = current_device()
    key = launch_key(kernel, args, kwargs, device) if usable(kernel) else None
    return _launch(key, kernel, grid, slow, device, args, kwargs)


def keyed_launch(key: tuple | None, kernel: triton.JITFunction, grid: tuple[int, ...], slow: Callable, *args: object,
                 **kwargs: object):  # fmt: skip
    """``cached_launch`` with the caller's key instead of ``launch_key``: a key that fixes (with the kernel and the
    current device) everything Triton specialises this launch on, e.g. a memoised launch plan's own token (for the
    constexprs, options and int arguments it derives from shapes) and the tensors' alignment. None: through ``slow``."""
    device = current_device()
    key = (id(kernel), device, key, len(args)) if key is not None and usable(kernel) else None
    return _launch(key, kernel, grid, slow, device, args, kwargs)


def cached_entry(kernel: triton.JITFunction, key: tuple, nargs: int) -> tuple | None:
    """What ``keyed_launch(key, kernel, grid, slow, *args)`` with ``nargs`` positional arguments would call: the
    compiled kernel kept from an earlier launch and its parameter tail, for ``run_entry``; None where it would call
    ``slow``."""
    return _COMPILED.get((id(kernel), current_device(), key, nargs)) if usable(kernel) else None


def run_entry(entry: tuple, grid: tuple[int, ...], stream: int, args: tuple) -> None:
    """Launch a ``cached_entry`` on the raw CUDA stream ``stream`` (not necessarily the current one)."""
    compiled, tail = entry[0], entry[1]
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    compiled.run(
        grid[0], g1, g2, stream, compiled.function, compiled.packed_metadata, None, None, None, *args, *tail
    )  # fmt: skip


def _launch(key: tuple | None, kernel: triton.JITFunction, grid: tuple[int, ...], slow: Callable, device: int,
            args: tuple, kwargs: dict):  # fmt: skip
    hit = _COMPILED.get(key) if key is not None else None
    if hit is None:
        compiled = slow(kernel, grid, *args, **kwargs)
        if (
            key is not None
            and len(_COMPILED) < _MAX_KEYS
            and all(hasattr(compiled, a) for a in ("run", "function", "packed_metadata"))
        ):
            # the parameters after the positional arguments (constexprs, defaults): fixed by the key, which holds
            # the number of positional arguments and every keyword argument's value (or the caller's plan token)
            # (the kernel itself too: while it is kept, no other kernel can have its id, which the key holds)
            _COMPILED[key] = (compiled, bound_args(kernel, args, kwargs)[len(args) :], kernel)
        return compiled
    run_entry(hit, grid, current_stream(device), args)
    return hit[0]
