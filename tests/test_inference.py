"""VideoSegmenter: input forms, batch of clips, equality with the clip forward, constant memory on long clips."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import psutil
import pytest
import torch

from gdkvm.errors import InputError
from gdkvm.inference import VideoSegmenter
from gdkvm.model import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread avoids spin-waiting when the 2 cores are shared (tests run 5-10x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small").eval()


@pytest.mark.parametrize("value_feedback", [True, False], ids=["feedback", "parallel"])
def test_segment_equals_clip_forward(value_feedback: bool) -> None:
    net = build_model("small", value_feedback=value_feedback, num_classes=3).eval()
    frames = torch.rand(2, 6, 1, 32, 48)
    with torch.no_grad():
        expected = net(frames).softmax(dim=2)
    probs = VideoSegmenter(net).segment(frames)
    assert probs.shape == (2, 6, 4, 32, 48)
    assert (probs - expected).abs().max() < 1e-4


def test_single_clip_forms_agree(model: torch.nn.Module) -> None:
    rng = np.random.default_rng(0)
    clip_u8 = rng.integers(0, 256, size=(4, 32, 32), dtype=np.uint8)
    seg = VideoSegmenter(model)
    a = seg.segment(clip_u8)  # [T, H, W] uint8 numpy
    b = seg.segment(torch.from_numpy(clip_u8).float().div(255)[:, None])  # [T, 1, H, W] float torch
    c = seg.segment(torch.from_numpy(clip_u8)[None, :, None])  # [1, T, 1, H, W] batch of one
    assert a.shape == (4, 2, 32, 32) and c.shape == (1, 4, 2, 32, 32)
    assert (a - b).abs().max() < 1e-5 and (a - c[0]).abs().max() < 1e-5
    assert torch.allclose(a.sum(dim=1), torch.ones(4, 32, 32), atol=1e-5)


def test_step_by_step_equals_segment(model: torch.nn.Module) -> None:
    clip = torch.rand(5, 32, 32)
    seg = VideoSegmenter(model)
    whole = seg.segment(clip)
    seg.reset()
    steps = torch.stack([seg.step(frame) for frame in clip])  # [H, W] frames
    assert (steps - whole).abs().max() < 1e-6
    seg.reset()
    assert seg.state is None


def test_batch_of_clips_equals_clips_one_by_one(model: torch.nn.Module) -> None:
    clips = torch.rand(3, 4, 1, 32, 32)
    seg = VideoSegmenter(model)
    batch = seg.segment(clips)
    for i in range(3):
        assert (seg.segment(clips[i]) - batch[i]).abs().max() < 1e-4


@pytest.mark.parametrize(
    "frames, match",
    [
        (torch.rand(3, 30, 32), "multiples of 16"),
        (torch.rand(3, 32, 32, 3), "grayscale"),
        (torch.rand(3, 32, 32) * 255, r"\[0, 1\]"),
        (np.zeros((3, 32, 32), dtype=np.int32), "uint8 or float"),
        (torch.zeros(0, 32, 32), "no frames"),
        ([[0.0]], "numpy array or torch tensor"),
    ],
    ids=["size", "rgb", "range", "int32", "empty", "list"],
)
def test_bad_input_raises_input_error(model: torch.nn.Module, frames: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        VideoSegmenter(model).segment(frames)


def test_size_change_needs_reset(model: torch.nn.Module) -> None:
    seg = VideoSegmenter(model)
    seg.step(torch.rand(32, 32))
    with pytest.raises(InputError, match="reset"):
        seg.step(torch.rand(48, 32))
    seg.reset()
    assert seg.step(torch.rand(48, 32)).shape == (2, 48, 32)


def _state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def _live_tensors() -> int:
    gc.collect()
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())


@pytest.mark.parametrize("update_rule", ["frame", "token"])
def test_thousand_frames_keep_memory_flat(update_rule: str) -> None:
    """1000 streamed frames: the state keeps its size, no graph is kept, and neither Python nor process memory grows.

    Process memory (RSS) is read after each of four 200-frame windows. A leak grows it in every window (keeping one
    8.6 KB state per frame alone adds 1.6 MiB a window); allocator warm-up (per-thread malloc arenas on many-core
    machines) and other threads of the test process grow it once. So the quietest window must stay under 1 MiB.
    """
    torch.manual_seed(0)
    net = build_model(
        "small", update_rule=update_rule, embed_dim=16, ff_dim=16, num_queries=4, sensory_dim=8, full_res_dim=4
    ).eval()
    seg = VideoSegmenter(net)
    frames = torch.rand(50, 1, 32, 32)
    proc = psutil.Process()

    def run(n: int) -> int:
        for t in range(n):
            seg.step(frames[t % 50])
        gc.collect()
        return proc.memory_info().rss

    rss = [run(200)]
    state_bytes = _state_bytes(seg.state)
    tensors0 = _live_tensors()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    rss += [run(200) for _ in range(4)]
    growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap0, "filename"))
    tracemalloc.stop()
    tensors = _live_tensors()
    windows_mib = [(b - a) / 2**20 for a, b in zip(rss, rss[1:])]
    assert _state_bytes(seg.state) == state_bytes
    assert all(not t.requires_grad and t.grad_fn is None for t in seg.state.values())
    assert growth < 256 * 1024, f"python heap grew by {growth} B over 800 frames"
    assert tensors <= tensors0 + 50, f"live tensors grew from {tensors0} to {tensors} over 800 frames"
    assert min(windows_mib) < 1.0, f"process memory grew in every 200-frame window: {windows_mib} MiB"


@pytest.mark.parametrize("update_rule", ["frame", "token"])
def test_step_traces_as_one_graph(update_rule: str) -> None:
    """``step`` has static shapes and no data-dependent branch: dynamo captures it whole (needed for CUDA graphs)."""
    net = build_model("small", update_rule=update_rule).eval()
    frames = torch.rand(2, 1, 32, 32)
    compiled = torch.compile(net.step, fullgraph=True, backend="eager")
    with torch.no_grad():
        state = ref_state = net.init_state(1, 32, 32)
        for frame in frames:
            logits, state = compiled(frame[None], state)
            ref, ref_state = net.step(frame[None], ref_state)
            assert torch.allclose(logits, ref, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("update_rule", ["frame", "token"])
def test_gpu_streaming_matches_clip_and_runs_compiled_bf16(update_rule: str) -> None:
    """On CUDA (Triton ops): streaming == clip forward in fp32; bf16 autocast + CUDA graphs gives nearly the same."""
    net = build_model("small", update_rule=update_rule, ops_backend="triton").cuda().eval()
    frames = torch.rand(2, 6, 1, 64, 64, device="cuda")
    with torch.no_grad():
        expected = net(frames).softmax(dim=2)
    probs = VideoSegmenter(net).segment(frames)
    assert (probs - expected).abs().max() < 1e-3
    fast = VideoSegmenter(net, amp=True, compile=True)
    for _ in range(2):  # the second pass replays the recorded graphs
        out = fast.segment(frames)
    assert out.shape == expected.shape and torch.isfinite(out).all()
    assert (out - expected).abs().mean() < 0.02
