"""The demo in a real browser: Debian chromium, driven by playwright, against ``gdkvm demo`` run as a subprocess.

A user uploads a synthetic clip, presses Segment, and sees the overlay video play (Chromium decodes it), the EF, the
area curve, the beat table and the downloads; bad uploads (wrong type, too big, corrupt) give a readable message and
the server keeps serving. Skipped (with the reason) where playwright or chromium is missing; ``.ci/run`` installs
chromium, so CI runs it. ``GDKVM_DEMO_SCREENSHOT=docs/img/demo.png`` refreshes the README's screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_UPLOAD_MB = 2
CLIP_FRAMES, CLIP_FPS = 60, 30.0  # 2 s at 75 bpm: 2.5 beats, one complete ED -> ES
RUN_TIMEOUT_MS = 180_000  # the 2 shared CI cores may be busy with other work


def _chromium() -> str | None:
    """Debian's chromium (playwright drives it through executable_path; it never downloads a browser)."""
    for candidate in (os.environ.get("GDKVM_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sync_api():
    """playwright's sync API, or a skip naming what is missing."""
    api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")
    if _chromium() is None:
        pytest.skip("needs Debian chromium (/usr/bin/chromium; apt-get install chromium, as .ci/run does)")
    return api


@pytest.fixture(scope="module")
def server(sync_api, tmp_path_factory):
    """``gdkvm demo`` on 127.0.0.1 and a free port, CPU, small upload limit; yields (url, process)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "demo.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("TRITON_INTERPRET", None)  # no Triton kernel runs in the demo
    cmd = [sys.executable, "-m", "gdkvm.cli", "demo", "--port", str(port), "--device", "cpu"]
    cmd += ["--max-file-size", f"{MAX_UPLOAD_MB}mb", "--concurrency", "1"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gdkvm demo exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gdkvm demo did not answer on {url} within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(sync_api):
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the demo, fully loaded."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(server[0])
    page.wait_for_selector("#run")
    yield page
    page.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A short synthetic A4C clip (mp4) from the library's generator."""
    from gdkvm.data.synthetic import make_clip
    from gdkvm.data.video import write_video

    frames, _, _ = make_clip(5, view="4CH", size=(112, 112), frames=CLIP_FRAMES, fps=CLIP_FPS, ef=55.0, heart_rate=75.0)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, frames, CLIP_FPS)
    return path


def _upload(page, files: Path | list[Path]) -> None:
    """Put files into the main upload box (clearing what it holds) and wait until they are uploaded."""
    files = files if isinstance(files, list) else [files]
    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#upload input[type=file]").set_input_files([str(f) for f in files])


def _run_and_wait(page) -> str:
    """Press Segment and return the status line once the request has finished (it must differ from the last one)."""
    before = page.locator("#status").inner_text().strip()
    page.click("#run")
    page.wait_for_function(
        """(before) => {
          const text = ((document.querySelector('#status') || {}).innerText || '').trim();
          return text !== before && /^(EF |No |Error)/.test(text);
        }""",
        arg=before,
        timeout=RUN_TIMEOUT_MS,
    )
    return page.locator("#status").inner_text().strip()


def _toast(page, text: str) -> str:
    """The error toast's text containing ``text`` (waits for it)."""
    toast = page.locator(".toast-body", has_text=text).first
    toast.wait_for(state="visible")
    return toast.inner_text()


def _save_screenshot(page, tmp_path: Path) -> Path:
    """Full-page screenshot; with GDKVM_DEMO_SCREENSHOT set, also a 256-colour copy there (the README's image)."""
    shot = page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    target = os.environ.get("GDKVM_DEMO_SCREENSHOT")
    if target:
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        image.save(target, optimize=True)
    return tmp_path / "demo.png"


def test_upload_run_plays_overlay_and_shows_ef(page, clip, tmp_path):
    _upload(page, clip)
    page.locator("#upload [aria-label='clip.mp4']").wait_for()
    status = _run_and_wait(page)
    match = re.match(r"EF (\d+\.\d)%", status)
    assert match, f"no EF in the page: {status!r}"
    assert 5.0 < float(match.group(1)) < 95.0

    # the overlay video: loaded, decodable by Chromium, the clip's length and size, and it plays
    page.wait_for_function(
        "() => { const v = document.querySelector('#overlay video');"
        " return v !== null && (v.error !== null || (v.readyState >= 2 && v.duration > 0)); }",
        timeout=60_000,
    )
    video = page.evaluate(
        """async () => {
          const v = document.querySelector('#overlay video');
          v.muted = true;
          const start = v.currentTime;
          await v.play();
          await new Promise((resolve) => setTimeout(resolve, 600));
          return {error: v.error && v.error.code, state: v.readyState, duration: v.duration, width: v.videoWidth,
                  height: v.videoHeight, advanced: v.currentTime !== start, src: v.currentSrc};
        }"""
    )
    assert video["error"] is None, video
    assert video["state"] >= 1 and video["duration"] > 0, video
    assert video["duration"] == pytest.approx(CLIP_FRAMES / CLIP_FPS, abs=0.1), video
    assert (video["width"], video["height"]) == (112, 112), video
    assert video["advanced"], f"the overlay video does not play: {video}"

    # the area curve, the per-beat table (the summary's beat is in it) and the downloads
    curve = page.locator("#curve img").first
    assert curve.evaluate("img => img.complete && img.naturalWidth > 0")
    beats = page.locator("#beats").inner_text()
    # the table renders 55.0 as "55": compare numbers, not text
    numbers = [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", beats)]
    assert "accepted" in beats and any(abs(x - float(match.group(1))) < 0.051 for x in numbers), beats
    for name in ("clip_masks.nii.gz", "clip_areas.csv", "ef_beats.csv"):
        assert page.locator(f"#downloads [aria-label='{name}']").count() == 1, page.locator("#downloads").inner_text()

    shot = _save_screenshot(page, tmp_path)
    assert shot.stat().st_size > 10_000


def test_bad_uploads_show_errors_and_server_keeps_serving(page, server, clip, tmp_path):
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not a clip")
    _upload(page, wrong)
    assert "Invalid file type" in _toast(page, "Invalid file type")

    huge = tmp_path / "huge.mp4"
    huge.write_bytes(os.urandom((MAX_UPLOAD_MB + 1) * 1024 * 1024))
    _upload(page, huge)
    assert "huge.mp4" in _toast(page, "maximum allowed size")

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    _upload(page, corrupt)
    page.locator("#upload [aria-label='corrupt.mp4']").wait_for()
    status = _run_and_wait(page)
    assert status.startswith("Error: corrupt.mp4:"), status  # the file's name, not the server's folders
    assert "corrupt" in status[len("Error: corrupt.mp4:") :] and "/tmp" not in status, status

    # the server is still up, and the same page segments a good clip right after the error
    assert server[1].poll() is None
    with urllib.request.urlopen(server[0], timeout=10) as response:
        assert response.status == 200
    _upload(page, clip)
    page.locator("#upload [aria-label='clip.mp4']").wait_for()
    assert _run_and_wait(page).startswith("EF "), page.locator("#status").inner_text()
