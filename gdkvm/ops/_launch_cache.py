"""Repeated Triton launches without the JIT's per-call work.

``JITFunction.run`` binds the arguments, specialises each one (dtype, 16-byte alignment, ints equal to 1 or divisible
by 16), builds the compile-cache key and looks the kernel up on every launch; on an H100 host that is about half of
the frame forward's host time at B10 T10 N64 (docs/benchmarks.md). ``cached_launch`` keeps, per kernel, the compiled
kernel of each launch key it has seen and calls it as ``JITFunction.run`` does. Its key holds at least what Triton
specialises on (for tensors: dtype and alignment; for ints: the range, and where the kernel specialises them, == 1 and
% 16; other values whole) plus the launch options, the constexprs and the device, so two launches with one key compile
to the same kernel; an argument of any other kind is not cached.

It only applies on CUDA with the Triton versions in ``SUPPORTED`` (whose ``CompiledKernel.run`` takes the arguments
used here; checked on a GPU), with no launch hooks (profilers) and no pre-run hooks set; elsewhere it returns None and
the caller launches through the JIT.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton

SUPPORTED = ("3.6.",)
_COMPILED: dict[tuple, object] = {}
_PARAMS: dict[object, tuple] = {}
_SKIP = object()


def _value_key(value: object, constexpr: bool, specialize: bool) -> object:
    """What a launch key holds of one argument: a constexpr's or launch option's value, else what Triton specialises a
    runtime argument on; ``_SKIP`` for a kind this module does not cache."""
    if constexpr:
        return ("c", value) if isinstance(value, (bool, int, float, str, type(None))) else _SKIP
    if isinstance(value, torch.Tensor):
        return (value.dtype, value.data_ptr() % 16 == 0)
    if isinstance(value, bool):
        return (bool,)
    if isinstance(value, int):
        small = -(2**31) <= value < 2**31
        return (small, value == 1, value % 16 == 0) if specialize else (small, value >= 2**63)
    if isinstance(value, float):
        return (float,)
    if value is None:
        return (None,)
    return _SKIP


def _params(kernel: triton.JITFunction) -> tuple[list[tuple[str, object, bool, bool]], dict[str, tuple[bool, bool]]]:
    """Per parameter in signature order (name, default, is constexpr, is specialised), and the same flags by name."""
    if kernel not in _PARAMS:
        rows = [(p.name, p.default, p.is_constexpr, not p.do_not_specialize) for p in kernel.params]
        _PARAMS[kernel] = (rows, {name: (c, spec) for name, _, c, spec in rows})
    return _PARAMS[kernel]


def launch_key(kernel: triton.JITFunction, args: tuple, kwargs: dict, device: int) -> tuple | None:
    """The cache key of one launch on CUDA device ``device``, or None where an argument is of a kind this module does
    not cache."""
    rows, by_name = _params(kernel)
    if len(args) > len(rows):
        return None
    values = [_value_key(a, c, spec) for a, (_, _, c, spec) in zip(args, rows)]
    values += [_value_key(v, *by_name.get(name, (True, True))) for name, v in kwargs.items()]  # options: whole
    if any(v is _SKIP for v in values):
        return None
    return (kernel, device, len(args), tuple(kwargs), tuple(values))


def bound_args(kernel: triton.JITFunction, args: tuple, kwargs: dict) -> list:
    """Every parameter's value in signature order (constexprs included, defaults filled in), as JITFunction.run
    passes them to the compiled kernel; launch options (num_warps, ...) are not parameters."""
    rows, _ = _params(kernel)
    return [*args, *(kwargs.get(name, default) for name, default, _, _ in rows[len(args) :])]


def current_stream(device: int) -> int:
    """The raw CUDA stream Triton would launch on for ``device``."""
    from triton.runtime.driver import driver

    return driver.active.get_current_stream(device)


def _no_hook(hook: object) -> bool:
    """Whether a launch hook (None, or a ``HookChain`` since Triton 3.5) calls nothing."""
    return hook is None or (isinstance(getattr(hook, "calls", None), list) and not hook.calls)


def usable(kernel: triton.JITFunction) -> bool:
    """Whether launches of this kernel may go through the cache here (see the module docstring)."""
    from triton import knobs

    runtime = knobs.runtime
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
    device = torch.cuda.current_device()
    key = launch_key(kernel, args, kwargs, device) if usable(kernel) else None
    compiled = _COMPILED.get(key) if key is not None else None
    if compiled is None:
        compiled = slow(kernel, grid, *args, **kwargs)
        if key is not None and all(hasattr(compiled, a) for a in ("run", "function", "packed_metadata")):
            _COMPILED[key] = compiled
        return compiled
    stream = current_stream(device)
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    compiled.run(
        grid[0], g1, g2, stream, compiled.function, compiled.packed_metadata, None, None, None,
        *bound_args(kernel, args, kwargs),
    )  # fmt: skip
    return compiled
