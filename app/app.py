"""gdkvm browser demo: upload an echo clip, see the overlay video, the LV area curve with ED/ES, and the EF.

Only layout lives here; the work is ``gdkvm.demo.safe_analyze``. Start it with ``gdkvm demo`` (binds 127.0.0.1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from gdkvm.demo import (  # noqa: E402
    BEAT_HEADERS,
    VIEWS,
    beat_rows,
    checkpoint_choices,
    example_clips,
    example_view,
    safe_analyze,
)

UPLOAD_TYPES = [".avi", ".mp4", ".dcm", ".nii", ".gz", ".mhd", ".mha", ".raw", ".zraw"]
INTRO = """# gdkvm: echo video segmentation and ejection fraction
Upload an apical clip (.avi, .mp4, DICOM, .nii.gz, or .mhd together with its .raw) or pick a synthetic example, then
press **Segment**. The default model is trained on **synthetic** echo only: not for clinical use."""
CSS = "#status p { font-size: 1.15rem; font-weight: 600; }"
EMPTY = (None, None, [], None)


def build_app(ckpt: str | Sequence[str] = "default", device: str | None = None) -> gr.Blocks:
    """The Gradio Blocks page.

    Args:
        ckpt: the checkpoint(s) the model box offers (the first is preselected; the bundled ones are added).
        device: torch device for every request (default: GPU when present).
    """
    examples = example_clips()
    models = checkpoint_choices(ckpt)

    def run(upload, example, second, view, fps, model_ckpt, progress=gr.Progress()):  # noqa: B008
        """One request: the uploaded clip (or the example) -> overlay, curve, beat table, downloads, summary line."""
        clip = upload or (examples.get(example) if example else None)
        if not clip:
            return *EMPTY, "Error: upload a clip or pick an example first."
        if model_ckpt not in models:
            return *EMPTY, f"Error: unknown model {model_ckpt!r}; choose one of the list."
        result, error = safe_analyze(
            clip, view=view, second_path=second or None, ckpt=model_ckpt, fps=fps or None, device=device,
            progress=progress,
        )  # fmt: skip
        if result is None:
            return *EMPTY, error
        files = [str(p) for p in result.files]
        return str(result.overlay), result.figure, beat_rows(result.report), files, result.message

    with gr.Blocks(title="gdkvm demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    label="Echo clip", file_types=UPLOAD_TYPES, file_count="multiple", type="filepath", elem_id="upload"
                )
                example = gr.Dropdown(
                    choices=list(examples), value=None, label="...or a synthetic example", elem_id="example"
                )
                view = gr.Radio(list(VIEWS), value="A4C", label="View of the clip", elem_id="view")
                second = gr.File(
                    label="Optional: the other apical view of the same heart, for biplane EF",
                    file_types=UPLOAD_TYPES,
                    file_count="multiple",
                    type="filepath",
                    elem_id="second",
                )
                with gr.Row():
                    fps = gr.Number(
                        label="Frame rate (fps) if the file has none (0: from the file)", value=None, precision=2,
                        minimum=0,
                    )  # fmt: skip
                    model_ckpt = gr.Dropdown(models, value=models[0], label="Model", elem_id="model")
                button = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                video = gr.Video(
                    label="Overlay (LV red, myocardium green, LA blue)", elem_id="overlay", autoplay=True, loop=True,
                    interactive=False, height=280,
                )  # fmt: skip
                plot = gr.Plot(label="LV area curve", elem_id="curve")
                table = gr.Dataframe(headers=BEAT_HEADERS, label="EF per beat", interactive=False, elem_id="beats")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        example.change(example_view, inputs=example, outputs=view, api_name=False)
        button.click(
            run,
            inputs=[upload, example, second, view, fps, model_ckpt],
            outputs=[video, plot, table, files, status],
            api_name="segment",
        )
    return demo


def launch(
    ckpt: str | Sequence[str] = "default",
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    max_file_size: str = "300mb",
    concurrency: int = 2,
    prevent_thread_lock: bool = False,
) -> gr.Blocks:
    """Build and serve the page: one queue shared by all users, an upload size limit, local binding by default.

    Args:
        ckpt: checkpoint(s) offered (see :func:`build_app`).
        host: address to bind; 127.0.0.1 serves this machine only.
        port: TCP port.
        device: torch device.
        max_file_size: largest upload accepted (e.g. ``300mb``); bigger files are refused in the page.
        concurrency: requests processed at once; the rest wait in the queue (at most 64 waiting).
        prevent_thread_lock: return at once (tests) instead of serving until interrupted.
    """
    demo = build_app(ckpt, device)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        show_error=True,
        prevent_thread_lock=prevent_thread_lock,
        quiet=True,
        css=CSS,
    )
    return demo


if __name__ == "__main__":
    launch()
