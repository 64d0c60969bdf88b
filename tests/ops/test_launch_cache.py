"""gdkvm.ops._launch_cache on the CPU: launch keys, argument order and the cached call (no kernel runs here)."""

from __future__ import annotations

import inspect

import pytest
import torch
import triton.language as tl
from triton.runtime.jit import JITFunction

from gdkvm.ops import _launch_cache as lc


def _body(x_ptr, y_ptr, N, M, scale, BK: tl.constexpr, PREC: tl.constexpr = "ieee", FLAG: tl.constexpr = False):
    pass  # never compiled: only its signature matters


KERNEL = JITFunction(_body, do_not_specialize=["M"])  # a real JIT function (not the interpreter's), as on a GPU


def _key(*args: object, **kwargs: object) -> tuple | None:
    return lc.launch_key(KERNEL, args, kwargs, 0)


def test_bound_args_are_the_signature_order_with_defaults() -> None:
    x, y = torch.zeros(4), torch.zeros(4)
    cases = [((x, y, 64, 7, 0.5), {"BK": 16}), ((x, y, 64, 7, 0.5, 32), {"FLAG": True, "num_warps": 4})]
    for args, kwargs in cases:
        params = {k: v for k, v in kwargs.items() if k in inspect.signature(_body).parameters}
        expected = inspect.signature(_body).bind(*args, **params)
        expected.apply_defaults()
        assert lc.bound_args(KERNEL, args, kwargs) == list(expected.arguments.values())


def test_key_holds_what_triton_specialises_on() -> None:
    x, y = torch.zeros(8), torch.zeros(8)
    base = _key(x, y, 64, 7, 0.5, BK=16, num_warps=4)
    assert base is not None and base == _key(torch.ones(8), y, 64, 7, 0.5, BK=16, num_warps=4)
    different = [
        _key(x[1:], y, 64, 7, 0.5, BK=16, num_warps=4),  # a pointer off the 16-byte boundary
        _key(x.double(), y, 64, 7, 0.5, BK=16, num_warps=4),  # another dtype
        _key(x, y, 1, 7, 0.5, BK=16, num_warps=4),  # a specialised int equal to 1
        _key(x, y, 65, 7, 0.5, BK=16, num_warps=4),  # ... not divisible by 16
        _key(x, y, 64, 2**40, 0.5, BK=16, num_warps=4),  # an int past int32
        _key(x, y, 64, 7, 0.5, BK=32, num_warps=4),  # a constexpr
        _key(x, y, 64, 7, 0.5, BK=16, PREC="tf32", num_warps=4),  # a constexpr left at its default before
        _key(x, y, 64, 7, 0.5, BK=16, num_warps=8),  # a launch option
        _key(x, y, 64, 7, 0.5, 16, num_warps=4),  # the constexpr passed by position
    ]
    assert all(k is not None and k != base for k in different)
    assert len(set(different)) == len(different)
    # ints of one class (not 1, not divisible by 16, int32) compile alike: the same key; a runtime int equal to 1 gets
    # its own key (Triton specialises on it unless the parameter is do_not_specialize: a finer key is still correct)
    assert _key(x, y, 64, 33, 0.5, BK=16, num_warps=4) == _key(x, y, 48, 7, 0.5, BK=16, num_warps=4) == base
    assert _key(x, y, 64, 1, 0.5, BK=16, num_warps=4) != base
    assert _key(x, y, 64, 2**63, 0.5, BK=16) != _key(x, y, 64, 2**40, 0.5, BK=16)  # uint64 vs int64
    assert _key(x, y, 64, 7, 0.5, 32) != _key(x, y, 64, 7, 0.5, 48)  # a constexpr int by position: its value
    assert _key(x, y, True, 7, 0.5, BK=16) != _key(x, y, 1, 7, 0.5, BK=16)  # a bool is not the int 1
    assert _key(x, y, 64, 7, 0.5, BK=16, FLAG=True) != _key(x, y, 64, 7, 0.5, BK=16, FLAG=1)
    assert lc.launch_key(KERNEL, (x, y, 64, 7, 0.5), {"BK": 16, "num_warps": 4}, 1) != base  # another device
    assert _key(x, y, 64, 7, object(), BK=16) is None  # an argument of unknown kind: never cached
    assert _key(x, y, 64, 7, 0.5, BK=[16]) is None


class _Compiled:
    """Stands in for a CompiledKernel: records each direct call."""

    function, packed_metadata = "function", "packed"

    def __init__(self) -> None:
        self.calls = []

    def run(self, *args: object) -> None:
        self.calls.append(args)


@pytest.fixture
def on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache as on a GPU: usable, device 0, stream 1234, nothing cached yet."""
    monkeypatch.setattr(lc, "usable", lambda kernel: True)
    monkeypatch.setattr(lc, "current_stream", lambda device: 1234)
    monkeypatch.setattr(lc, "current_device", lambda: 0)
    monkeypatch.setattr(lc, "_COMPILED", {})


def test_cached_launch_calls_the_compiled_kernel_as_the_jit_does(on_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled, slow_calls = _Compiled(), []

    def slow(kernel: object, grid: tuple, *args: object, **kwargs: object) -> _Compiled:
        slow_calls.append((grid, args, kwargs))
        return compiled

    x, y = torch.zeros(8), torch.zeros(8)
    assert lc.cached_launch(KERNEL, (3, 2), slow, x, y, 64, 7, 0.5, BK=16, num_warps=4) is compiled
    assert len(slow_calls) == 1 and not compiled.calls  # first launch of the key: through the JIT
    lc.cached_launch(KERNEL, (5,), slow, x, y, 64, 9, 0.5, BK=16, num_warps=4)
    assert len(slow_calls) == 1
    launch = (5, 1, 1, 1234, "function", "packed", None, None, None)  # grid, stream, kernel, metadata, no hooks
    assert compiled.calls == [(*launch, x, y, 64, 9, 0.5, 16, "ieee", False)]
    lc.cached_launch(KERNEL, (5,), slow, x[1:], y, 64, 9, 0.5, BK=16, num_warps=4)  # a new key: the JIT again
    assert len(slow_calls) == 2
    monkeypatch.setattr(lc, "_MAX_KEYS", len(lc._COMPILED))  # full: new keys are launched through the JIT, not kept
    for _ in range(2):
        lc.cached_launch(KERNEL, (5,), slow, x, y, 64, 9, 0.25, BK=16, num_warps=4)
    assert len(slow_calls) == 4 and len(lc._COMPILED) == 2


def test_unsupported_triton_or_hooks_go_through_the_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    from triton import knobs

    monkeypatch.setattr(lc.triton, "__version__", "3.6.0")
    assert lc.usable(KERNEL)
    hook = knobs.runtime.launch_enter_hook  # a HookChain in Triton 3.6 and 3.9, empty unless a profiler adds to it
    monkeypatch.setattr(hook, "calls", [lambda *a: None])
    assert not lc.usable(KERNEL)
    monkeypatch.setattr(hook, "calls", [])
    monkeypatch.setattr(lc.triton, "__version__", "3.9.0")
    assert not lc.usable(KERNEL)


def test_keyed_launch_trusts_the_callers_key(on_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``keyed_launch`` caches under (kernel, device, the caller's key): a repeated key calls the compiled kernel with
    this launch's arguments; no key (or an unusable kernel) always goes through the JIT."""
    compiled, slow_calls = _Compiled(), []

    def slow(kernel: object, grid: tuple, *args: object, **kwargs: object) -> _Compiled:
        slow_calls.append(grid)
        return compiled

    x, y = torch.zeros(8), torch.zeros(8)
    lc.keyed_launch(("plan", 0), KERNEL, (2,), slow, x, y, 64, 7, 0.5, BK=16)
    lc.keyed_launch(("plan", 0), KERNEL, (4, 3), slow, y, x, 64, 9, 0.5, BK=16)
    assert slow_calls == [(2,)]
    launch = (4, 3, 1, 1234, "function", "packed", None, None, None)  # grid, stream, kernel, metadata, no hooks
    assert compiled.calls == [(*launch, y, x, 64, 9, 0.5, 16, "ieee", False)]
    lc.keyed_launch(("plan", 1), KERNEL, (2,), slow, x, y, 64, 7, 0.5, BK=16)  # another key: the JIT
    lc.keyed_launch(None, KERNEL, (2,), slow, x, y, 64, 7, 0.5, BK=16)
    monkeypatch.setattr(lc, "usable", lambda kernel: False)
    lc.keyed_launch(("plan", 0), KERNEL, (2,), slow, x, y, 64, 7, 0.5, BK=16)
    assert len(slow_calls) == 4 and len(compiled.calls) == 1
    assert set(lc._COMPILED) == {(id(KERNEL), 0, ("plan", 0), 5), (id(KERNEL), 0, ("plan", 1), 5)}
    assert all(entry[2] is KERNEL for entry in lc._COMPILED.values())  # kept alive: its id names no other kernel
    monkeypatch.setattr(lc, "usable", lambda kernel: True)
    for _ in range(2):  # one argument more: another key (not the 5-argument key's cached tail), then its cached call
        lc.keyed_launch(("plan", 0), KERNEL, (2,), slow, x, y, 64, 7, 0.5, 32)
    assert len(slow_calls) == 5 and compiled.calls[-1] == (2, 1, 1, 1234, "function", "packed", None, None, None,
                                                           x, y, 64, 7, 0.5, 32, "ieee", False)  # fmt: skip
