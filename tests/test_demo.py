"""The browser demo's API (gradio_client), concurrency and error handling (real browser: test_demo_browser)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import av
import pytest

from gdkvm.cli.demo import load_app_module
from gdkvm.demo import example_clips

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_ckpt():
    from gdkvm.checkpoint import WEIGHTS_DIR

    path = WEIGHTS_DIR / "default.pt"
    assert path.is_file(), "the bundled default model gdkvm/weights/default.pt is missing"
    return path


@pytest.fixture(scope="module")
def server(demo_ckpt, tmp_path_factory):
    """A demo server on 127.0.0.1 for this module (stopped at the end)."""
    app = load_app_module()
    port = free_port()
    demo = app.launch(ckpt=str(demo_ckpt), port=port, device="cpu", concurrency=2, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/", demo
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server[0], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _predict(client, clip, *, view="A4C", second=None, model=None):
    """One /segment call; the model box keeps its preselected value unless ``model`` is given."""
    from gradio_client import handle_file

    kwargs = {"model_ckpt": model} if model is not None else {}
    other = None if second is None else [handle_file(str(second))]
    return client.predict(
        upload=[handle_file(str(clip))], example=None, second=other, view=view, fps=None, api_name="/segment", **kwargs
    )


def _duration(path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return float(container.duration or 0) / av.time_base


def test_api_upload_returns_video_plot_and_ef(client):
    clip = next(iter(example_clips().values()))
    video, plot, table, files, status = _predict(client, clip)
    assert _duration(video["video"] if isinstance(video, dict) else video) > 0
    assert plot is not None
    assert status.startswith("EF "), status
    assert table["data"] and all(len(row) == 7 for row in table["data"])
    names = sorted(str(f).rsplit("/", 1)[-1] for f in files)
    assert any(n.endswith("_masks.nii.gz") for n in names) and "ef_beats.csv" in names


def test_api_bad_upload_shows_error_and_server_keeps_serving(client, tmp_path):
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    *_, status = _predict(client, bad)
    assert status.startswith("Error: corrupt.avi:") and "/tmp" not in status, status  # file name, not server folders
    wrong_type = tmp_path / "notes.txt"
    wrong_type.write_text("hello")
    with pytest.raises(Exception, match="Invalid file type"):  # refused by the upload widget, readable in the page
        _predict(client, wrong_type)
    clip = next(iter(example_clips().values()))
    assert _predict(client, clip)[-1].startswith("EF ")


def test_api_biplane_and_a2c_view(client):
    clips = list(example_clips().values())
    a4c, a2c = clips[0], clips[2]
    video, plot, table, files, status = _predict(client, a2c, view="A2C", second=a4c)
    assert status.startswith("EF ") and status.endswith("biplane, A4C+A2C"), status
    names = sorted(str(f).rsplit("/", 1)[-1] for f in files)
    assert sum(n.endswith("_masks.nii.gz") for n in names) == 2, names
    assert "example3_2CH_seed13_overlay" in str(video["video"] if isinstance(video, dict) else video)


def test_api_refuses_models_not_offered(client, tmp_path):
    with pytest.raises(Exception, match="not in the list of choices|unknown model"):
        _predict(client, next(iter(example_clips().values())), model=str(tmp_path / "other.pt"))


def test_eight_concurrent_requests_all_answered(client):
    clips = list(example_clips().values())
    jobs = [clips[i % len(clips)] for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: _predict(client, c), jobs))
    assert len(results) == 8
    statuses = [r[-1] for r in results]
    assert all(s.startswith("EF ") for s in statuses), statuses
    # the same clip gives the same answer whatever else runs beside it (each request has its own state)
    assert statuses[0] == statuses[3] == statuses[6]
